"""The coordinator: the sidecar in each job's rank-0 pod that turns every rank's reports into
atomically committed checkpoints, a metric history and the TrainJob status (docs/architecture.md).

Modules: ``aggregation`` (pure bookkeeping of reports), ``committing`` (commit protocol and
retention on storage), ``history`` (metric history parts), ``recovery`` (state from storage at
start), ``sinks`` and ``publishing`` (where the status goes, coalesced), ``metrics``
(Prometheus), ``service`` (the coordinator tying them together), ``server`` (the HTTP API).
"""
