# syntax=docker/dockerfile:1
# Images of trainjob-operator:
#   docker build --target operator -t ghcr.io/trainjob-dev/trainjob-operator:0.1.0 .
#     `trainjob operator` (the default command) and `trainjob coordinator` (the sidecar the
#     operator puts in each job's rank-0 pod).
#   docker build --target worker -t ghcr.io/trainjob-dev/trainjob-worker:0.1.0 .
#     python + torch (CPU) + worker_sdk + the examples/ training programs.
# The base is pinned to an exact Python/Debian release; pin a digest too where your registry
# policy asks for one.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- builder: wheels of the SDK and the operator and everything they need ----------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY worker_sdk/ worker_sdk/
COPY operator/ operator/
# One resolution for both, so the operator's trainjob-sdk requirement is satisfied by the local
# project, never by an index. Without the `local` extra: no local cluster, SeaweedFS or matplotlib.
RUN pip wheel --no-cache-dir --wheel-dir /wheels/operator ./worker_sdk ./operator \
    && pip wheel --no-cache-dir --wheel-dir /wheels/worker ./worker_sdk

# ---- operator: operator + coordinator ------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS operator
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Installed offline from the builder's wheels, which the bind mount keeps out of the layers.
RUN --mount=type=bind,from=builder,source=/wheels/operator,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels trainjob-operator==0.1.0 \
    && groupadd --system --gid 65532 trainjob \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin trainjob
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["trainjob"]
CMD ["operator"]

# ---- worker: the training container of the examples ---------------------------------------------
FROM ${PYTHON_IMAGE} AS worker
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app
# torch's CPU build from its own index (the default index carries the CUDA build).
RUN --mount=type=bind,from=builder,source=/wheels/worker,target=/wheels \
    pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir --find-links /wheels "trainjob-sdk[transformers,lightning]==0.1.0" \
        scikit-learn==1.9.1 \
    && groupadd --system --gid 65532 trainjob \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin trainjob
WORKDIR /app
COPY --chown=root:root examples/ examples/
USER 65532:65532
CMD ["python", "-m", "examples.digits.train"]
