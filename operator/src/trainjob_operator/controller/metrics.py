"""The operator's own Prometheus metrics (served by `trainjob operator --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("trainjob_operator_reconciles_total", "Reconcile passes, by outcome", ["outcome"])
RECONCILE_SECONDS = Histogram(
    "trainjob_operator_reconcile_seconds", "Time of one reconcile pass including the API calls it made"
)
API_WRITES = Counter(
    "trainjob_operator_api_writes_total", "Writes the operator sent to the API, by verb", ["verb"]
)
JOBS_BY_PHASE = Gauge("trainjob_operator_jobs", "TrainJobs this operator handles, by phase", ["phase"])
