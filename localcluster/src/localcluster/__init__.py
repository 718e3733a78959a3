"""A single-machine Kubernetes: an API server and a node agent that runs pods as local processes.

`LocalCluster` starts both as subprocesses (a context manager); `python -m localcluster up`
does the same from a shell.
"""

from localcluster.cluster import ClusterError, LocalCluster

__all__ = ["ClusterError", "LocalCluster"]
