"""Talking to the coordinator sidecar: HTTP+JSON with the job's bearer token.

``CoordinatorLink`` is used by one sending thread (reports, in batches, and the finalize, in
order) and by rank 0's exit wait; a lock serialises them. should_stop() and the SIGTERM notice
ask from other threads without that lock (the training loop must not wait out the sender's
retries), each thread on a connection of its own. It keeps the reports whose checkpoints
are not committed yet, so that when the coordinator restarts (its ``coordinatorId`` changes) it
can send them again and the commit that was in flight completes. Batches and the finalize name
the coordinator they are for (``coordinatorId``): a restarted one refuses them until the re-sent
reports have gone first, so a newer checkpoint never commits ahead of (and gives up) an older one
that was in flight.

One keep-alive HTTP/1.1 connection (``http.client``), opened again when it breaks: a connection per
request costs the sending thread a TCP handshake and most of its time holding the GIL, which it
then takes from the training loop. A request that fails on a reused connection before any answer
is sent again at once on a new one (the server may have closed it while idle); every request is
idempotent for the coordinator (a report it already has comes back as a duplicate).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from worker_sdk._contract import CoordinatorChanged
from worker_sdk.errors import CoordinatorError
from worker_sdk.protocol import API_PREFIX, MAX_BATCH_REPORTS, Finalize, Report

log = logging.getLogger("worker_sdk")

# Uncommitted checkpoint reports kept for re-sending; beyond this the oldest are dropped (a commit
# normally follows within seconds, so many pending ones mean the coordinator cannot commit).
MAX_UNCOMMITTED = 16
_MAX_BACKOFF_SECONDS = 5.0
# A batch's body stays well under the coordinator's 1 MiB limit; bigger ones are split.
_MAX_BATCH_BYTES = 512 * 1024
# A request refused this often because the coordinator restarted again and again gives up.
_MAX_COORDINATOR_CHANGES = 5


class _Retryable(Exception):
    """A failure worth retrying: no connection, a timeout, 5xx, 408 or 429."""


class _CoordinatorChanged(Exception):
    """The request was addressed to a coordinator that a restarted one replaced."""

    def __init__(self, refusal: CoordinatorChanged) -> None:
        super().__init__(refusal.to_json()["error"])
        self.refusal = refusal


class CoordinatorLink:
    def __init__(self, url: str, token: str, *, timeout_seconds: float) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout_seconds
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the coordinator URL {url!r} is not an http(s) URL")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path_prefix = parts.path + API_PREFIX
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # One kept-alive connection per thread: the sending thread's requests, the training loop's
        # should_stop() and the SIGTERM notice go out at the same time, and an HTTP connection
        # carries one exchange at a time (sharing one, a thread read another's answer or found
        # the connection closed under it).
        self._local = threading.local()
        self._open: list[http.client.HTTPConnection] = []  # every thread's, for close()
        self._open_lock = threading.Lock()
        self._lock = threading.RLock()
        self._coordinator_id: str | None = None
        self._uncommitted: OrderedDict[int, Report] = OrderedDict()
        self._finalize: Finalize | None = None
        # Set when the process exits: retry loops give up at this time instead of retrying forever.
        self._give_up_at: float | None = None

    def give_up_at(self, deadline: float) -> None:
        self._give_up_at = deadline

    # -- what the session calls -------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        with self._lock:
            state = self._retrying("GET /v1/state", lambda: self._request("GET", "/state"))
            self._observe(state)
            return state

    def send_reports(self, reports: Sequence[Report]) -> list[CoordinatorError]:
        """Reports in order, as few batch requests as fit the body limit; a failed request is
        sent again (the coordinator's duplicates make that safe). Returns one error per report
        the coordinator refused (the others are recorded); raises :class:`CoordinatorError` when
        a whole request was refused or could not be delivered in time."""
        errors: list[CoordinatorError] = []
        with self._lock:
            for batch, encoded in self._batches(reports):
                first, last = batch[0].iteration, batch[-1].iteration
                what = (
                    f"reports of iterations {first}-{last}"
                    if first != last
                    else f"report of iteration {first}"
                )
                reports_json = b'"reports":[' + b",".join(encoded) + b"]}"
                body = self._retrying(what, lambda reports_json=reports_json: self._post_batch(reports_json))
                results = body.get("results")
                if not isinstance(results, list) or len(results) != len(batch):
                    raise CoordinatorError(
                        f"the coordinator at {self.url} answered {len(batch)} reports with "
                        f"{body.get('results')!r}: not one result per report"
                    )
                self._observe(body)
                for report, result in zip(batch, results, strict=True):
                    if isinstance(result, dict) and "error" in result:
                        errors.append(
                            CoordinatorError(
                                f"the coordinator at {self.url} refused the report of iteration "
                                f"{report.iteration} (HTTP {result.get('status')}): {result['error']}"
                            )
                        )
                    elif report.checkpoint is not None:
                        self._uncommitted[report.iteration] = report
                if any(report.checkpoint is not None for report in batch):
                    self._limit_uncommitted(body)
        return errors

    def _batches(self, reports: Sequence[Report]) -> list[tuple[list[Report], list[bytes]]]:
        batches: list[tuple[list[Report], list[bytes]]] = []
        size = 0
        for report in reports:
            encoded = json.dumps(report.to_json(), separators=(",", ":")).encode()
            if (
                not batches
                or len(batches[-1][0]) >= MAX_BATCH_REPORTS
                or (batches[-1][0] and size + len(encoded) > _MAX_BATCH_BYTES)
            ):
                batches.append(([], []))
                size = 0
            batches[-1][0].append(report)
            batches[-1][1].append(encoded)
            size += len(encoded) + 1
        return batches

    def _limit_uncommitted(self, body: dict[str, Any]) -> None:
        self._prune(body.get("latestCheckpoint"))
        if len(self._uncommitted) > MAX_UNCOMMITTED:
            self._prune(self._request_state().get("latestCheckpoint"))
        while len(self._uncommitted) > MAX_UNCOMMITTED:
            iteration, _ = self._uncommitted.popitem(last=False)
            log.warning(
                "more than %d reported checkpoints are not committed; no longer keeping iteration %d "
                "for re-sending after a coordinator restart",
                MAX_UNCOMMITTED,
                iteration,
            )

    def send_finalize(self, finalize: Finalize) -> None:
        with self._lock:
            body = self._retrying(
                "finalize",
                lambda: self._to_current(
                    lambda: self._request(
                        "POST", "/finalize", replace(finalize, coordinator_id=self._coordinator_id).to_json()
                    )
                ),
            )
            self._observe(body)  # before remembering it: a coordinator that just got it needs no re-send
            self._finalize = finalize

    def poll_settled(self) -> tuple[bool, dict[str, Any]]:
        """One look at the state: has the coordinator committed and flushed everything? With the
        state it answered (empty when there was none to read)."""
        with self._lock:
            try:
                state = self._request("GET", "/state")
            except _Retryable as exc:
                log.info("coordinator state not available yet: %s", exc)
                return False, {}
            except CoordinatorError as exc:
                log.warning("not waiting for the coordinator to settle: %s", exc)
                return True, {}
            self._observe(state)
            return bool(state.get("settled")), state

    # -- coordinator restarts -----------------------------------------------------------------
    def _observe(self, body: dict[str, Any]) -> None:
        coordinator_id = body.get("coordinatorId")
        if isinstance(coordinator_id, str):
            self._heard_from(coordinator_id)

    def _heard_from(self, coordinator_id: str) -> None:
        """The coordinator answering is `coordinator_id`; a new one gets what the last did not
        commit."""
        previous, self._coordinator_id = self._coordinator_id, coordinator_id
        if previous is None or previous == coordinator_id:
            return
        state = self._request_state()
        self._prune(state.get("latestCheckpoint"))
        log.warning(
            "the coordinator restarted (%s -> %s): sending again %d report(s) whose checkpoints are not "
            "committed%s",
            previous,
            coordinator_id,
            len(self._uncommitted),
            " and this rank's finalize" if self._finalize else "",
        )
        for report in list(self._uncommitted.values()):
            self._resend(f"report of iteration {report.iteration}", "/reports", report.to_json())
        if self._finalize is not None:
            self._resend("finalize", "/finalize", self._finalize.to_json())

    def _resend(self, what: str, path: str, payload: dict[str, Any]) -> None:
        try:
            self._retrying(f"re-sent {what}", lambda: self._request("POST", path, payload))
        except CoordinatorError as exc:
            # The first send was accepted; a refusal now (e.g. a duplicate) is not a lost report.
            log.warning("the restarted coordinator refused the re-sent %s: %s", what, exc)

    def _request_state(self) -> dict[str, Any]:
        return self._retrying("GET /v1/state", lambda: self._request("GET", "/state"))

    def _prune(self, latest: object) -> None:
        if not isinstance(latest, dict) or not isinstance(latest.get("iteration"), int):
            return
        for iteration in [i for i in self._uncommitted if i <= latest["iteration"]]:
            del self._uncommitted[iteration]

    # -- HTTP -------------------------------------------------------------------------------
    def _retrying(self, what: str, call: Any) -> dict[str, Any]:
        delay = 0.1
        while True:
            if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                raise CoordinatorError(f"{what} not delivered: gave up on the coordinator at {self.url}")
            try:
                result: dict[str, Any] = call()
                return result
            except _Retryable as exc:
                if self._give_up_at is not None and time.monotonic() + delay > self._give_up_at:
                    raise CoordinatorError(
                        f"{what} not delivered: the coordinator at {self.url} is unreachable ({exc})"
                    ) from None
                log.info("%s: coordinator unavailable (%s); retrying in %.1fs", what, exc, delay)
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _MAX_BACKOFF_SECONDS)

    def ask_should_stop(self, rank: int, iteration: int) -> dict[str, Any]:
        """``POST /v1/should-stop``, tried once: the loop asks again at its next report."""
        try:
            return self._request("POST", "/should-stop", {"rank": rank, "iteration": iteration})
        except _Retryable as exc:
            raise CoordinatorError(
                f"the coordinator at {self.url} did not answer should-stop: {exc}"
            ) from None

    def announce_sigterm(self, rank: int, deadline: float) -> None:
        """``POST /v1/notice``: this rank's trainer got SIGTERM. A few quick tries; never raises
        (the pod is going away either way)."""
        from datetime import UTC, datetime

        stamp = datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for _ in range(3):
            try:
                self._request("POST", "/notice", {"rank": rank, "deadline": stamp})
                return
            except (_Retryable, CoordinatorError) as exc:
                log.info("notice of rank %d's SIGTERM not delivered: %s", rank, exc)
                time.sleep(0.5)

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        return self._request_bytes(method, path, data)

    def _request_bytes(
        self, method: str, path: str, data: bytes | None, *, per_report: bool = False
    ) -> dict[str, Any]:
        try:
            status, body = self._exchange(method, path, data)
        except (http.client.HTTPException, OSError) as exc:  # refused, reset, timed out, garbled
            self._disconnect()
            raise _Retryable(str(exc) or type(exc).__name__) from None
        if status in (408, 429) or status >= 500:
            raise _Retryable(f"HTTP {status}: {body[:500].decode(errors='replace')}")
        try:
            parsed = json.loads(body) if body else {}
        except json.JSONDecodeError:
            if status >= 400:
                parsed = {}
            else:
                raise _Retryable(f"not JSON: {body[:200]!r}") from None
        answer = parsed if isinstance(parsed, dict) else {}
        if status == 409 and (changed := CoordinatorChanged.from_json(answer)) is not None:
            raise _CoordinatorChanged(changed)
        if status == 401:
            raise CoordinatorError(
                f"the coordinator at {self.url} refused the report token (HTTP 401): "
                "TRAINJOB_REPORT_TOKEN does not match the job's token"
            )
        if status >= 400 and not (per_report and isinstance(answer.get("results"), list)):
            raise CoordinatorError(
                f"the coordinator at {self.url} refused {method} {API_PREFIX}{path} "
                f"(HTTP {status}): {body[:500].decode(errors='replace')}"
            )
        return answer

    def _post_batch(self, reports_json: bytes) -> dict[str, Any]:
        def post() -> dict[str, Any]:
            # Addressed to the coordinator last heard from (ReportBatch says why).
            head = (
                b"{"
                if self._coordinator_id is None
                else b'{"coordinatorId":%s,' % json.dumps(self._coordinator_id).encode()
            )
            # Some reports refused: the answer says which, and the others are recorded.
            return self._request_bytes("POST", "/reports", head + reports_json, per_report=True)

        return self._to_current(post)

    def _to_current(self, send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``send()``, addressed to the coordinator last heard from; when that one was replaced,
        first what the new one must have (``_observe`` re-sends it), then ``send()`` again."""
        for _ in range(_MAX_COORDINATOR_CHANGES):
            try:
                return send()
            except _CoordinatorChanged as changed:
                self._heard_from(changed.refusal.coordinator_id)
        raise CoordinatorError(
            f"the coordinator at {self.url} changed {_MAX_COORDINATOR_CHANGES} times during one request"
        )

    def _exchange(self, method: str, path: str, data: bytes | None) -> tuple[int, bytes]:
        """One request on the kept-alive connection; once more on a new connection when a reused
        one turns out to be closed before anything was answered."""
        reused = self._connection is not None
        try:
            return self._exchange_once(method, path, data)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            self._disconnect()
            return self._exchange_once(method, path, data)

    @property
    def _connection(self) -> http.client.HTTPConnection | None:
        """This thread's kept-alive connection, if open."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        return connection

    def _exchange_once(self, method: str, path: str, data: bytes | None) -> tuple[int, bytes]:
        connection = self._connection
        if connection is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
            with self._open_lock:
                self._open.append(connection)
        connection.request(method, self._path_prefix + path, body=data, headers=self._headers)
        response = connection.getresponse()
        body = response.read()
        if response.will_close:
            self._disconnect()
        return response.status, body

    def _disconnect(self) -> None:
        connection = self._connection
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._open_lock:
                if connection in self._open:  # not when close() took it already
                    self._open.remove(connection)

    def close(self) -> None:
        """Close every thread's kept-alive connection (a later request opens a new one)."""
        with self._open_lock:
            connections, self._open = self._open, []
        for connection in connections:
            connection.close()
