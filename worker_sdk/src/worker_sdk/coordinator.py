"""Talking to the coordinator sidecar: HTTP+JSON with the job's bearer token.

``CoordinatorLink`` is used by one sending thread (reports, finalize, in order) and by rank 0's
exit wait; a lock serialises them. It keeps the reports whose checkpoints are not committed yet,
so that when the coordinator restarts (its ``coordinatorId`` changes) it can send them again and
the commit that was in flight completes.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from typing import Any

from worker_sdk.errors import CoordinatorError
from worker_sdk.protocol import API_PREFIX, Finalize, Report

log = logging.getLogger("worker_sdk")

# Uncommitted checkpoint reports kept for re-sending; beyond this the oldest are dropped (a commit
# normally follows within seconds, so many pending ones mean the coordinator cannot commit).
MAX_UNCOMMITTED = 16
_MAX_BACKOFF_SECONDS = 5.0


class _Retryable(Exception):
    """A failure worth retrying: no connection, a timeout, 5xx, 408 or 429."""


class CoordinatorLink:
    def __init__(self, url: str, token: str, *, timeout_seconds: float) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout_seconds
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

    def send_report(self, report: Report) -> None:
        with self._lock:
            body = self._retrying(
                f"report of iteration {report.iteration}",
                lambda: self._request("POST", "/reports", report.to_json()),
            )
            self._observe(body)
            if report.checkpoint is not None:
                self._uncommitted[report.iteration] = report
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
            body = self._retrying("finalize", lambda: self._request("POST", "/finalize", finalize.to_json()))
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
        if not isinstance(coordinator_id, str):
            return
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
        request = urllib.request.Request(  # noqa: S310 - the URL comes from the operator's env contract
            f"{self.url}{API_PREFIX}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            if exc.code in (408, 429) or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {detail}") from None
            if exc.code == 401:
                raise CoordinatorError(
                    f"the coordinator at {self.url} refused the report token (HTTP 401): "
                    "TRAINJOB_REPORT_TOKEN does not match the job's token"
                ) from None
            raise CoordinatorError(
                f"the coordinator at {self.url} refused {method} {API_PREFIX}{path} "
                f"(HTTP {exc.code}): {detail}"
            ) from None
        except (OSError, TimeoutError) as exc:  # URLError, refused, reset, timed out
            raise _Retryable(str(getattr(exc, "reason", exc))) from None
        try:
            parsed = json.loads(body) if body else {}
        except json.JSONDecodeError:
            raise _Retryable(f"not JSON: {body[:200]!r}") from None
        return parsed if isinstance(parsed, dict) else {}
