"""A Kubernetes API server in Python that keeps objects in memory (optionally in a state file).

Library use: `server = APIServer(port=0, kubeconfig=path); await server.start(); server.url`.
Command line: `python -m localcluster.apiserver --host 127.0.0.1 --port 0 --kubeconfig PATH`.
"""

from .app import APIServer

__all__ = ["APIServer"]
