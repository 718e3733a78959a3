"""The coordinator's HTTP API (aiohttp); its place in a report's path: docs/architecture.md.

``/v1/*`` needs ``Authorization: Bearer <job token>``; ``/healthz`` and ``/metrics`` do not and
show nothing secret. Every refusal is a JSON ``{"error": message}`` with a 4xx status, logged,
and is decided before anything is recorded, so a refused request never writes to storage.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from trainjob_operator.coordinator.aggregation import ReportRejected, Verdict
from trainjob_operator.coordinator.metrics import CONTENT_TYPE_LATEST
from trainjob_operator.coordinator.service import Coordinator
from worker_sdk._contract import CoordinatorChanged, FinalizeAnswer, ReportAnswer
from worker_sdk.protocol import API_PREFIX, Finalize, ProtocolError, Report, ReportBatch

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# A client that sends its headers and then stalls is answered 408 after this long (it would
# otherwise hold its handler forever); other clients are served meanwhile.
BODY_TIMEOUT_SECONDS = 30.0

COORDINATOR_KEY = web.AppKey("coordinator", Coordinator)
TOKEN_KEY = web.AppKey("token", bytes)
BODY_TIMEOUT_KEY = web.AppKey("body_timeout", float)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refuse(request: web.Request, status: int, reason: str, message: str, **headers: str) -> web.Response:
    request.app[COORDINATOR_KEY].refused(reason)
    log.warning("refused %s %s from %s: %d %s", request.method, request.path, request.remote, status, message)
    return web.json_response({"error": message}, status=status, headers=headers or None)


@web.middleware
async def _require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(f"{API_PREFIX}/"):
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return _refuse(
                request, 401, "unauthorized", "missing bearer token", **{"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(presented.strip().encode(), request.app[TOKEN_KEY]):
            return _refuse(request, 401, "unauthorized", "wrong token", **{"WWW-Authenticate": "Bearer"})
    return await handler(request)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# json.loads(..., parse_constant=...) builds a new decoder per call: one, reused.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _loads(body: bytes) -> Any:
    """``json.loads(body, parse_constant=_refuse_constant)`` without the per-call decoder."""
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


async def _read_json(request: web.Request) -> Any:
    """The body as JSON; raises :class:`_BodyRefused` for one that is too large or not JSON."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _BodyRefused(
            413,
            "too_large",
            f"body of {request.content_length} bytes is over the {MAX_BODY_BYTES} byte limit",
        )
    timeout = request.app[BODY_TIMEOUT_KEY]
    try:
        if request.content.is_eof():
            # The whole body came with the headers (the usual report): reading cannot stall,
            # so no timer (arming and cancelling one costs more than parsing the report).
            body = await request.read()
        else:
            async with asyncio.timeout(timeout):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _BodyRefused(413, "too_large", f"body is over the {MAX_BODY_BYTES} byte limit") from None
    except TimeoutError:
        raise _BodyRefused(408, "timeout", f"request body not received within {timeout:g}s") from None
    try:
        return _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BodyRefused(400, "malformed", f"malformed JSON: {exc}") from None


class _BodyRefused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


async def _post_report(request: web.Request) -> web.StreamResponse:
    """One report, or a batch (``{"reports": [...]}``, see :class:`ReportBatch`)."""
    coordinator = request.app[COORDINATOR_KEY]
    try:
        body = await _read_json(request)
        if isinstance(body, dict) and "reports" in body:
            batch = ReportBatch.from_json(body)
            elsewhere = _addressed_elsewhere(request, coordinator, batch.coordinator_id)
            return elsewhere or _answer_batch(request, coordinator, batch)
        report = Report.from_json(body)
        verdict = coordinator.accept_report(report)
    except _BodyRefused as exc:
        return _refuse(request, exc.status, exc.reason, exc.message)
    except ProtocolError as exc:
        return _refuse(request, 400, "invalid", str(exc))
    except ReportRejected as exc:
        log.warning("refused report from %s: %d %s", request.remote, exc.status, exc)
        return web.json_response({"error": str(exc)}, status=exc.status)
    answer = ReportAnswer(coordinator.id, coordinator.iteration, duplicate=verdict is Verdict.DUPLICATE)
    return web.json_response(answer.to_json())


def _addressed_elsewhere(
    request: web.Request, coordinator: Coordinator, addressed_to: str | None
) -> web.Response | None:
    """The 409 for a request addressed to a coordinator this process replaced (see
    :class:`ReportBatch`), before anything is recorded; None when it is addressed here (or to no
    one in particular)."""
    if addressed_to is None or addressed_to == coordinator.id:
        return None
    coordinator.refused("coordinator_changed")
    log.info(
        "%s %s from %s was addressed to coordinator %s",
        request.method,
        request.path,
        request.remote,
        addressed_to,
    )
    return web.json_response(CoordinatorChanged(coordinator.id, addressed_to).to_json(), status=409)


def _answer_batch(request: web.Request, coordinator: Coordinator, batch: ReportBatch) -> web.Response:
    """Every report's outcome, in order (``results[i]``: ``{"duplicate": bool}`` or
    ``{"error", "status"}``). All accepted: 200. Otherwise the first refusal's status, with an
    ``error`` that says how many were refused and why the first was: a client that looks only at
    the status sees the failure, and one that re-sends the whole batch loses nothing (the
    accepted reports come back as duplicates)."""
    outcomes = coordinator.accept_reports(batch.reports)
    results: list[dict[str, Any]] = []
    refused: list[tuple[int, ReportRejected]] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, ReportRejected):
            refused.append((index, outcome))
            results.append({"error": str(outcome), "status": outcome.status})
        else:
            results.append({"duplicate": outcome is Verdict.DUPLICATE})
    answer: dict[str, Any] = {
        "accepted": len(outcomes) - len(refused),
        "refused": len(refused),
        "results": results,
        "coordinatorId": coordinator.id,
        "iteration": coordinator.iteration,
    }
    if not refused:
        return web.json_response(answer)
    index, first = refused[0]
    report = batch.reports[index]
    answer["error"] = (
        f"{len(refused)} of {len(outcomes)} reports refused (the others are recorded); the first, "
        f"reports[{index}] (rank {report.rank}, iteration {report.iteration}): {first}"
    )
    log.warning("refused reports from %s: %d %s", request.remote, first.status, answer["error"])
    return web.json_response(answer, status=first.status)


async def _post_finalize(request: web.Request) -> web.StreamResponse:
    coordinator = request.app[COORDINATOR_KEY]
    try:
        finalize = Finalize.from_json(await _read_json(request))
        if elsewhere := _addressed_elsewhere(request, coordinator, finalize.coordinator_id):
            return elsewhere
        coordinator.accept_finalize(finalize)
    except _BodyRefused as exc:
        return _refuse(request, exc.status, exc.reason, exc.message)
    except ProtocolError as exc:
        return _refuse(request, 400, "invalid", str(exc))
    except ReportRejected as exc:
        log.warning("refused finalize from %s: %d %s", request.remote, exc.status, exc)
        return web.json_response({"error": str(exc)}, status=exc.status)
    answer = FinalizeAnswer(coordinator.id, coordinator.iteration, settled=coordinator.settled)
    return web.json_response(answer.to_json())


def _int_field(body: Any, name: str) -> int:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{name} must be a non-negative integer, got {value!r}")
    return value


async def _post_should_stop(request: web.Request) -> web.StreamResponse:
    """``{"rank", "iteration"}`` -> ``{"stop", "stopIteration"?, "notice"?}``."""
    coordinator = request.app[COORDINATOR_KEY]
    try:
        body = await _read_json(request)
        answer = coordinator.should_stop(_int_field(body, "rank"), _int_field(body, "iteration"))
    except _BodyRefused as exc:
        return _refuse(request, exc.status, exc.reason, exc.message)
    except ProtocolError as exc:
        return _refuse(request, 400, "invalid", str(exc))
    except ReportRejected as exc:
        return _refuse(request, exc.status, "rejected", str(exc))
    return web.json_response(answer)


async def _post_notice(request: web.Request) -> web.StreamResponse:
    """``{"rank", "deadline"?}``: that rank's trainer got SIGTERM; the gang is told to stop."""
    coordinator = request.app[COORDINATOR_KEY]
    try:
        body = await _read_json(request)
        deadline = body.get("deadline") if isinstance(body, dict) else None
        coordinator.rank_signalled(_int_field(body, "rank"), deadline if isinstance(deadline, str) else None)
    except _BodyRefused as exc:
        return _refuse(request, exc.status, exc.reason, exc.message)
    except ProtocolError as exc:
        return _refuse(request, 400, "invalid", str(exc))
    except ReportRejected as exc:
        return _refuse(request, exc.status, "rejected", str(exc))
    return web.json_response({"accepted": True, "notice": coordinator.notices.notice})


async def _get_state(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[COORDINATOR_KEY].state())


async def _get_metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[COORDINATOR_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _get_healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


def create_app(
    coordinator: Coordinator, token: str, *, body_timeout: float = BODY_TIMEOUT_SECONDS
) -> web.Application:
    """The app; starting and stopping ``coordinator``'s background work is tied to the app's."""
    if not token.strip():
        raise ValueError("the report token is empty")
    # client_max_size also catches chunked bodies, which have no Content-Length to check first.
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_require_token])
    app[COORDINATOR_KEY] = coordinator
    app[TOKEN_KEY] = token.strip().encode()
    app[BODY_TIMEOUT_KEY] = body_timeout
    app.router.add_post(f"{API_PREFIX}/reports", _post_report)
    app.router.add_post(f"{API_PREFIX}/finalize", _post_finalize)
    app.router.add_get(f"{API_PREFIX}/state", _get_state)
    app.router.add_post(f"{API_PREFIX}/should-stop", _post_should_stop)
    app.router.add_post(f"{API_PREFIX}/notice", _post_notice)
    app.router.add_get("/metrics", _get_metrics)
    app.router.add_get("/healthz", _get_healthz)

    async def lifecycle(app: web.Application) -> Any:
        await coordinator.start()
        yield
        await coordinator.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
