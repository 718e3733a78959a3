"""The TrainJob dashboard: a read-only web app showing every job, its live metric curves,
checkpoints, pods, events and logs (`trainjob dashboard`).

`serve()` is the whole public surface; `app` holds the routes, `informer` the list-and-watch
cache behind them, `rows` what each object looks like on the page.
"""

from trainjob_operator.dashboard.serving import serve

__all__ = ["serve"]
