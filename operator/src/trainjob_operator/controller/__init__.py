"""The operator process: thin kopf handlers around the pure reconcile decision.

handlers.py   what kopf calls: the pod index, wake-ups, one daemon per TrainJob
acting.py     applies a Decision's actions and status patch through the Kubernetes API
writing.py    the write threads, taking queued writes by lane: creations first
expecting.py  pods created and not yet seen by the watch, so a pass never creates them twice
waking.py     per-job wake-up signals (watch-driven reconcile, no polling loop)
metrics.py    the operator's own Prometheus metrics
running.py    `trainjob operator`: kopf's settings, peering, liveness, scope
"""
