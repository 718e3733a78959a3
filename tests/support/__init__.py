"""What the tests and the benchmarks (``bench/``) share, in one place: processes, ports and
waiting (:mod:`.processes`), a job's coordinator process and its ranks' environment (:mod:`.job`),
TrainJob manifests (:mod:`.manifests`), kubectl on a namespace of the local stack (:mod:`.kube`),
and the Helm chart's render (:mod:`.chart`, :mod:`.pod_security`).

Imported as ``tests.support``: pytest puts the repository root on the path (``pythonpath`` in
pyproject.toml) and ``python -m bench`` runs from it, so nothing edits ``sys.path``.
"""
