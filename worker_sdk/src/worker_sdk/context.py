"""What the SDK reads from the environment (docs/architecture.md, "The rank environment"), and the
``TrainContext`` users see.

The rule for the two modes:

- **Job mode** when any of ``TRAINJOB_COORDINATOR_URL``, ``TRAINJOB_REPORT_TOKEN`` or
  ``TRAINJOB_ATTEMPT`` is set: only the operator sets those, so the process is a worker of a
  TrainJob and every variable of the contract must be there; a missing one is a
  :class:`JobEnvironmentError` naming it (a half-configured worker must not silently train
  standalone and lose its reports).
- **Standalone** otherwise: one process (``WORLD_SIZE``, if set, must be 1), job name from
  ``TRAINJOB_NAME`` or the script, checkpoints under ``TRAINJOB_STORAGE_URI`` or
  ``file://<cwd>/trainjob-results``, config from ``TRAINJOB_CONFIG``.

SDK knobs (both modes): ``TRAINJOB_FINAL_WAIT_SECONDS`` (rank 0's wait at exit after the last progress, 120),
``TRAINJOB_UPLOAD_QUEUE`` (async uploads staged at once, 2), ``TRAINJOB_REPORT_BUFFER``
(reports buffered while the coordinator is slow, 1000), ``TRAINJOB_STORAGE_RETRY_SECONDS``
(retry budget of each storage operation, 120), ``TRAINJOB_HTTP_TIMEOUT_SECONDS`` (10),
``TRAINJOB_STAGING_DIR`` (where async uploads are snapshotted; the system temp directory).
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker_sdk import _contract as names
from worker_sdk._contract import JOB_MARKERS, JOB_REQUIRED
from worker_sdk.errors import JobEnvironmentError

STANDALONE_NAMESPACE = "default"
STANDALONE_STORAGE_DIR = "trainjob-results"
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class TrainContext:
    """Where this worker sits in the job (Ray Train's ``TrainContext`` getters)."""

    __slots__ = (
        "_attempt",
        "_config",
        "_job_name",
        "_local_rank",
        "_local_world_size",
        "_namespace",
        "_node_rank",
        "_storage_uri",
        "_world_rank",
        "_world_size",
    )

    def __init__(
        self,
        *,
        job_name: str,
        namespace: str,
        attempt: int,
        world_size: int,
        world_rank: int,
        local_rank: int,
        local_world_size: int,
        node_rank: int,
        storage_uri: str,
        config: Mapping[str, Any],
    ) -> None:
        self._job_name = job_name
        self._namespace = namespace
        self._attempt = attempt
        self._world_size = world_size
        self._world_rank = world_rank
        self._local_rank = local_rank
        self._local_world_size = local_world_size
        self._node_rank = node_rank
        self._storage_uri = storage_uri
        self._config = dict(config)

    def get_job_name(self) -> str:
        return self._job_name

    def get_namespace(self) -> str:
        return self._namespace

    def get_attempt(self) -> int:
        """Restarts of the gang so far (0 for the first attempt)."""
        return self._attempt

    def get_world_size(self) -> int:
        return self._world_size

    def get_world_rank(self) -> int:
        return self._world_rank

    def get_local_rank(self) -> int:
        return self._local_rank

    def get_local_world_size(self) -> int:
        return self._local_world_size

    def get_node_rank(self) -> int:
        return self._node_rank

    def get_storage_uri(self) -> str:
        """The storage root; this job's checkpoints live under ``<uri>/<namespace>/<job>/``."""
        return self._storage_uri

    def get_config(self) -> dict[str, Any]:
        """The TrainJob's ``spec.config`` (a copy: changing it changes nothing else)."""
        return copy.deepcopy(self._config)

    def __repr__(self) -> str:
        return (
            f"TrainContext(job={self._namespace}/{self._job_name}, attempt={self._attempt}, "
            f"rank={self._world_rank}/{self._world_size}, storage={self._storage_uri})"
        )


@dataclass(frozen=True)
class Settings:
    """The SDK's knobs (module docstring); defaults suit a pod."""

    final_wait_seconds: float = 120.0
    upload_queue: int = 2
    report_buffer: int = 1000
    storage_retry_seconds: float = 120.0
    http_timeout_seconds: float = 10.0
    staging_dir: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        defaults = cls()
        return cls(
            final_wait_seconds=_number(environ, names.ENV_FINAL_WAIT_SECONDS, defaults.final_wait_seconds),
            upload_queue=int(_number(environ, names.ENV_UPLOAD_QUEUE, defaults.upload_queue, minimum=1)),
            report_buffer=int(_number(environ, names.ENV_REPORT_BUFFER, defaults.report_buffer, minimum=1)),
            storage_retry_seconds=_number(
                environ, names.ENV_STORAGE_RETRY_SECONDS, defaults.storage_retry_seconds
            ),
            http_timeout_seconds=_number(
                environ, names.ENV_HTTP_TIMEOUT_SECONDS, defaults.http_timeout_seconds, minimum=0.1
            ),
            staging_dir=environ.get(names.ENV_STAGING_DIR) or None,
        )


@dataclass(frozen=True)
class JobEnvironment:
    """Everything the SDK takes from the environment: the public context plus its own wiring."""

    context: TrainContext
    coordinator_url: str | None  # None: standalone
    report_token: str | None
    resume_checkpoint_uri: str | None
    settings: Settings

    @property
    def standalone(self) -> bool:
        return self.coordinator_url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobEnvironment:
        env = os.environ if environ is None else environ
        markers = [name for name in JOB_MARKERS if env.get(name)]
        if markers:
            missing = [name for name in JOB_REQUIRED if not env.get(name)]
            if missing:
                raise JobEnvironmentError(
                    f"incomplete trainjob environment: {', '.join(markers)} "
                    f"{'is' if len(markers) == 1 else 'are'} set, so this process is a TrainJob worker, "
                    f"but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not. "
                    "The operator sets all of them; to run standalone (one process, checkpoints in a "
                    f"local directory) unset {', '.join(JOB_MARKERS)} "
                    "(TRAINJOB_COORDINATOR_URL unset means standalone mode)"
                )
            return cls._job(env)
        return cls._standalone(env)

    @classmethod
    def _job(cls, env: Mapping[str, str]) -> JobEnvironment:
        world_size = _integer(env, names.ENV_WORLD_SIZE, minimum=1)
        rank = _integer(env, names.ENV_RANK)
        if rank >= world_size:
            raise JobEnvironmentError(f"RANK={rank} is not below WORLD_SIZE={world_size}")
        context = TrainContext(
            job_name=env[names.ENV_JOB_NAME],
            namespace=env[names.ENV_JOB_NAMESPACE],
            attempt=_integer(env, names.ENV_ATTEMPT),
            world_size=world_size,
            world_rank=rank,
            local_rank=_integer(env, names.ENV_LOCAL_RANK),
            local_world_size=_integer(env, names.ENV_LOCAL_WORLD_SIZE, minimum=1),
            node_rank=_integer(env, names.ENV_NODE_RANK),
            storage_uri=env[names.ENV_STORAGE_URI],
            config=_config(env),
        )
        return cls(
            context=context,
            coordinator_url=env[names.ENV_COORDINATOR_URL].rstrip("/"),
            report_token=env[names.ENV_REPORT_TOKEN],
            resume_checkpoint_uri=env.get(names.ENV_RESUME_CHECKPOINT) or None,
            settings=Settings.from_env(env),
        )

    @classmethod
    def _standalone(cls, env: Mapping[str, str]) -> JobEnvironment:
        world_size = _integer(env, names.ENV_WORLD_SIZE, minimum=1, default=1)
        if world_size != 1:
            raise JobEnvironmentError(
                f"WORLD_SIZE={world_size} but TRAINJOB_COORDINATOR_URL is not set: standalone mode "
                "runs one process; several processes need a TrainJob (and its coordinator)"
            )
        storage_uri = env.get(names.ENV_STORAGE_URI) or (Path.cwd() / STANDALONE_STORAGE_DIR).as_uri()
        context = TrainContext(
            job_name=env.get(names.ENV_JOB_NAME) or standalone_job_name(),
            namespace=env.get(names.ENV_JOB_NAMESPACE) or STANDALONE_NAMESPACE,
            attempt=0,
            world_size=1,
            world_rank=0,
            local_rank=0,
            local_world_size=1,
            node_rank=0,
            storage_uri=storage_uri,
            config=_config(env),
        )
        return cls(
            context=context,
            coordinator_url=None,
            report_token=None,
            resume_checkpoint_uri=env.get(names.ENV_RESUME_CHECKPOINT) or None,
            settings=Settings.from_env(env),
        )


def standalone_job_name() -> str:
    """The running program's name: ``examples.digits.train`` for ``python -m``, else the script's stem."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or Path(sys.argv[0] if sys.argv else "").stem
    name = _UNSAFE_NAME_CHARS.sub("-", name or "").strip(".-_")
    return name or "standalone"


def _integer(env: Mapping[str, str], name: str, *, minimum: int = 0, default: int | None = None) -> int:
    raw = env.get(name)
    if not raw:
        if default is None:
            raise JobEnvironmentError(f"{name} is not set")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise JobEnvironmentError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise JobEnvironmentError(f"{name}={value} must be >= {minimum}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise JobEnvironmentError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:  # also refuses NaN
        raise JobEnvironmentError(f"{name}={raw} must be >= {minimum:g}")
    return value


def _config(env: Mapping[str, str]) -> dict[str, Any]:
    raw = env.get(names.ENV_CONFIG)
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise JobEnvironmentError(f"TRAINJOB_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise JobEnvironmentError(f"TRAINJOB_CONFIG must be a JSON object, got {type(config).__name__}")
    return config
