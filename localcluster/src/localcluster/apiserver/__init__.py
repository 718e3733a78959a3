"""A Kubernetes API server in Python that keeps objects in memory (optionally in a state file).

Command line::

    python -m localcluster.apiserver --host 127.0.0.1 --port 0 --kubeconfig PATH
        [--state-file PATH] [--node-name localnode] [--token T] [--watch-history N] [--log-level L]
        [--authorization AlwaysAllow|RBAC]

It writes the kubeconfig (plain HTTP, an admin bearer token, context set current), prints
``localcluster apiserver listening on http://127.0.0.1:PORT`` once it serves, and stops on
SIGTERM/SIGINT, writing the state file last. Library use::

    server = APIServer(port=0, kubeconfig=path, state_file=None, node_name="localnode")
    await server.start(); server.url; server.admin_token; await server.stop()

What it does as a real cluster does: discovery (legacy; clients asking for aggregated discovery get
the legacy documents and fall back), OpenAPI v3 per group-version (``kubectl explain`` on CRDs; it
declares ``fieldValidation`` so kubectl leaves validation to the server), every built-in kind
clients commonly use plus any CRD (structural-schema validation, defaulting, pruning, status and
scale subresources, printer columns as ``meta.k8s.io/v1`` Tables), uid/resourceVersion (one global
counter)/generation, finalizers and deletionTimestamp, ownerReference garbage collection
(background, foreground, orphan), namespace termination, label/field selectors, paging, watch with
resourceVersion semantics, bookmarks and 410 Gone, merge/JSON/strategic-merge patches, server-side
apply with managedFields and conflicts, dry runs, ServiceAccount TokenRequests (HMAC JWTs the server
accepts), Endpoints and EndpointSlices of Services, pod logs proxied to the node, `pods/exec` and
`pods/portforward` relayed to the node over WebSockets (``nodeproxy.py``), `pods/eviction` honouring
PodDisruptionBudgets whose status it computes (``disruption.py``), impersonation. DELETE answers the
object or a Status per kind as the real registries do; error bodies are `metav1.Status` in its field
order with Go's trailing newline. Authorization: ``AlwaysAllow`` (default: every authenticated or
anonymous request) or ``RBAC`` (``rbac.py``: Roles, ClusterRoles incl. aggregation, bindings,
escalation prevention, the default discovery/basic-user/public-info roles; the kubeconfig's admin
token is in ``system:masters``). Go clients (kubectl, Helm) send no bearer token over plain HTTP, so
under RBAC they are ``system:anonymous``: use them with ``AlwaysAllow``, or Python clients.

In the server's process, as kube-scheduler and kube-controller-manager would run beside it: the
scheduler (``scheduler.py``; the ``pods/binding`` subresource too), the node lifecycle controller
with taint eviction and the out-of-service pod GC (``nodelifecycle.py``), and the Priority and
DefaultTolerationSeconds admission of new pods (``admission.py``). Graceful pod deletion waits
for the node agent only while the pod's Node object exists; pods
bound to a node that has no Node object are removed at once (as the pod garbage collector does
for a vanished node). Not done: CEL rules (``x-kubernetes-validations``), conversion webhooks
(all served versions of a CRD share one storage), admission webhooks, field validation of
built-in kinds (unknown fields of built-ins are kept), controllers for workloads (Deployments,
Jobs are stored, not run), protobuf responses (protobuf request bodies are read for
the kinds typed clients send: see ``protobuf.py``).
"""

from .app import APIServer

__all__ = ["APIServer"]
