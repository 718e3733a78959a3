"""What the API server proxies to a pod's node agent (the kubelet's port in Kubernetes): pod logs,
and the WebSocket streams of `pods/exec` and `pods/portforward`.

The node is found from the pod's `spec.nodeName` and the Node object's InternalIP address and
`daemonEndpoints.kubeletEndpoint.Port`, as the real API server does. Streams: the client's
upgrade is answered only once the node agent has accepted its own (so a refusal reaches the client
as an HTTP error and not as a dropped socket), with the subprotocol the two agreed; then messages
are relayed both ways unchanged (node/streaming.py speaks the kubelet's channel protocol).
Simplified: WebSockets only. kubectl (1.30+) tries them first and falls back to SPDY only when the
upgrade itself fails; SPDY requests are refused with a Status. `kubectl port-forward` tunnels SPDY
inside its WebSocket (`SPDY/3.1+portforward.k8s.io`) and so is not served; the kubernetes
client's `portforward` (v4.channel.k8s.io) is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
from aiohttp import WSMsgType, web

from . import wire
from .errors import APIError, bad_request
from .objects import ObjectAPI
from .resources import ResourceInfo
from .store import Obj
from .wire import json_response, status_response

EXEC_PROTOCOLS: tuple[str, ...] = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORT_FORWARD_PROTOCOLS: tuple[str, ...] = ("v4.channel.k8s.io",)
_ERROR_CHANNEL = 3
_EXEC_PARAMS = ("command", "stdin", "stdout", "stderr", "tty")


def _pods(api: ObjectAPI) -> ResourceInfo:
    info = api.registry.get("", "v1", "pods")
    assert info is not None
    return info


def _container(pod: Obj, requested: str) -> str:
    """The container a request means: the one named, the default-container annotation's, or the
    only one; else Kubernetes' 400 listing the choices."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    inits = [c.get("name", "") for c in spec.get("initContainers") or []]
    container = requested
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
    return container


def _kubelet(api: ObjectAPI, pod: Obj) -> tuple[str, int]:
    """(address, port) of the node agent that runs the pod."""
    name = pod["metadata"]["name"]
    node_name = (pod.get("spec") or {}).get("nodeName")
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
    return str(ip), int(port)


async def pod_log(api: ObjectAPI, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
    """GET pods/log: the container's log from its node agent, streamed as it arrives (`follow`)."""
    pod = api.get(_pods(api), namespace, name)
    container = _container(pod, request.query.get("container", ""))
    ip, port = _kubelet(api, pod)
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


async def pod_stream(
    api: ObjectAPI, request: web.Request, namespace: str, name: str, subresource: str
) -> web.StreamResponse:
    """GET or POST pods/exec and pods/portforward, upgraded to a WebSocket and relayed to the node."""
    pod = api.get(_pods(api), namespace, name)
    query: list[tuple[str, str]]
    if subresource == "exec":
        container = _container(pod, request.query.get("container", ""))
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        query = [
            (k, v) for k, v in request.query.items() if k in ("command", "stdin", "stdout", "stderr", "tty")
        ]
        path, supported = f"/exec/{namespace}/{name}/{container}", EXEC_PROTOCOLS
    else:
        # the client's `ports` become the kubelet's `port`, as the real server's location does
        ports = [p for raw in request.query.getall("ports", []) for p in raw.split(",") if p]
        if not ports:
            raise bad_request('query parameter "ports" is required')
        query = [("port", p) for p in ports]
        path, supported = f"/portForward/{namespace}/{name}", PORT_FORWARD_PROTOCOLS
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise bad_request(
            "Upgrade request required: this server streams over WebSockets "
            f"({', '.join(supported)}), not {request.headers.get('Upgrade') or 'plain HTTP'}"
        )
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    wanted = [p for p in offered if p in supported]
    if not wanted:
        raise bad_request(
            f"none of the WebSocket subprotocols offered ({', '.join(offered) or 'none'}) is supported: "
            f"use one of {', '.join(supported)}"
        )
    ip, port = _kubelet(api, pod)
    failure = (
        None if subresource != "exec" or _running(pod, container) else f'container not found ("{container}")'
    )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
    try:
        upstream: aiohttp.ClientWebSocketResponse | None = None
        if failure is None:
            try:
                upstream = await session.ws_connect(
                    f"http://{ip}:{port}{path}", protocols=wanted, params=query, autoping=True, max_msg_size=0
                )
            except aiohttp.WSServerHandshakeError as exc:
                failure = f"the node agent answered {exc.status}"
            except aiohttp.ClientConnectorError:
                failure = f"error dialing backend: dial tcp {ip}:{port}: connect: connection refused"
        if upstream is None:
            if subresource != "exec":
                raise APIError(500, "InternalError", f"Internal error occurred: {failure}")
            # As the real server's stream translator does: the client's upgrade succeeds and the
            # error arrives on the error channel.
            client = web.WebSocketResponse(protocols=wanted[:1], max_msg_size=0)
            await client.prepare(request)
            with contextlib.suppress(ConnectionResetError):
                await client.send_bytes(
                    bytes([_ERROR_CHANNEL]) + wire.dumps(_internal(failure or "")).encode()
                )
            await client.close()
            return client
        async with upstream:
            client = web.WebSocketResponse(
                protocols=[upstream.protocol] if upstream.protocol else [], max_msg_size=0
            )
            await client.prepare(request)
            await _relay(client, upstream)
            return client
    finally:
        await session.close()


def _running(pod: Obj, container: str) -> bool:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                return "running" in (cs.get("state") or {})
    return False


def _internal(why: str) -> Obj:
    """`apierrors.NewInternalError` as the error channel carries it."""
    message = f"unable to upgrade connection: {why}"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Binary messages both ways until one side closes; then the other is closed too."""

    async def down() -> None:
        async for msg in upstream:
            if msg.type == WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await client.send_str(msg.data)

    async def up() -> None:
        async for msg in client:
            if msg.type == WSMsgType.BINARY:
                await upstream.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await upstream.send_str(msg.data)

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, aiohttp.ClientError):
                await t
        await upstream.close()
        await client.close()
