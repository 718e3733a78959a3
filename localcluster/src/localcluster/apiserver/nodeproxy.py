"""What the API server proxies to a pod's node agent (the kubelet's port in Kubernetes): pod logs.

The node is found from the pod's `spec.nodeName` and the Node object's InternalIP address and
`daemonEndpoints.kubeletEndpoint.Port`, as the real API server does."""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from .errors import APIError, bad_request
from .objects import ObjectAPI
from .resources import ResourceInfo
from .wire import json_response, status_response


def _pods(api: ObjectAPI) -> ResourceInfo:
    info = api.registry.get("", "v1", "pods")
    assert info is not None
    return info


async def pod_log(api: ObjectAPI, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
    """GET pods/log: the container's log from its node agent, streamed as it arrives (`follow`)."""
    pod = api.get(_pods(api), namespace, name)
    spec = pod.get("spec") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    inits = [c.get("name", "") for c in spec.get("initContainers") or []]
    container = request.query.get("container", "")
    if not container:
        default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
        if default and default in containers + inits:
            container = default
        elif len(containers) == 1:
            container = containers[0]
        else:
            msg = (
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
            )
            if inits:
                msg += f" or one of the init containers: [{' '.join(inits)}]"
            raise bad_request(msg)
    if container not in containers + inits + [c.get("name") for c in spec.get("ephemeralContainers") or []]:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node_name = spec.get("nodeName")
    node = api.store.get(("", "nodes"), "", node_name) if node_name else None
    if node is None:
        raise bad_request(
            f"pod {name} does not have a host assigned" if not node_name else f'nodes "{node_name}" not found'
        )
    status = node.get("status") or {}
    ip = next(
        (a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None
    )
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not ip or not port:
        raise APIError(
            500,
            "InternalError",
            f"node {node_name} has no kubelet endpoint "
            "(InternalIP address and daemonEndpoints.kubeletEndpoint.Port)",
        )
    params = {
        k: v
        for k, v in request.query.items()
        if k in ("follow", "tailLines", "previous", "timestamps", "sinceSeconds", "sinceTime", "limitBytes")
    }
    url = f"http://{ip}:{port}/containerLogs/{namespace}/{name}/{container}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    resp: web.StreamResponse | None = None
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params=params) as upstream,
        ):
            if upstream.status != 200:
                text = await upstream.text()
                try:
                    status_obj = json.loads(text)
                    if isinstance(status_obj, dict) and status_obj.get("kind") == "Status":
                        return json_response(status_obj, upstream.status)
                except ValueError:
                    pass
                reason = {400: "BadRequest", 404: "NotFound"}.get(upstream.status, "InternalError")
                return status_response(APIError(upstream.status, reason, text.strip() or reason))
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except aiohttp.ClientConnectorError as exc:
        if resp is not None:
            return resp
        raise APIError(
            500, "InternalError", f'Get "{url}": dial tcp {ip}:{port}: connect: connection refused'
        ) from exc
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        return resp or web.Response(status=200)
