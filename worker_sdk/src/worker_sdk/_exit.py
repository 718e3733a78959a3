"""The process-exit and signal hooks that flush the session (see ``worker_sdk.session``).

Kept apart from the session itself: these are process-wide and installed once, whereas a session
is made and closed (tests close and remake it many times). The hooks call back into whatever
closes the current session, so this module needs nothing from ``worker_sdk.session``.

At exit (also on SIGTERM, which becomes ``SystemExit(143)`` so that the flush runs in the main
thread's unwinding) the close callback flushes pending uploads and reports. Failures it returns
are printed and make the process exit non-zero: reports or checkpoints were lost, and a zero exit
would make the attempt look successful.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

log = logging.getLogger("worker_sdk")

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM

# Closes the process's session: wait_settled -> the failures not raised yet.
CloseSession = Callable[[bool], list[Exception]]
# On SIGTERM: raise the disruption notice; True when the program acts on notices (should_stop()).
OnSigterm = Callable[[], bool]

_installed = False
_on_sigterm_hook: OnSigterm | None = None
_uncaught_exception = False
_terminating = False
_signalled = False


def install(close_session: CloseSession, on_sigterm: OnSigterm | None = None) -> None:
    """Install the hooks once per process; later calls do nothing."""
    global _installed, _on_sigterm_hook
    if _installed:
        return
    _installed = True
    _on_sigterm_hook = on_sigterm

    def exit_hook() -> None:
        _on_exit(close_session)

    # Before threads are joined and before concurrent.futures refuses new work at interpreter
    # exit: the flush needs thread pools (parallel uploads, boto3's transfer manager).
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(exit_hook)
    else:  # pragma: no cover - CPython has had it since 3.9
        import atexit

        atexit.register(exit_hook)
    previous_excepthook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        global _uncaught_exception
        _uncaught_exception = True  # the attempt failed: do not hold rank 0 for the settle wait
        previous_excepthook(kind, value, traceback)

    sys.excepthook = excepthook
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    global _terminating, _signalled
    if _terminating or _signalled:
        return  # already unwinding, flushing, or waiting for the program's own stop
    _signalled = True
    if _on_sigterm_hook is not None and _on_sigterm_hook():
        # The program acts on notices: it stops after its next report (and checkpoint). If it has
        # not exited when only the flush margin is left of the pod's grace, flush and exit anyway.
        from worker_sdk.preemption import FLUSH_MARGIN_SECONDS, termination_grace_seconds

        delay = max(1.0, termination_grace_seconds() - FLUSH_MARGIN_SECONDS)
        log.warning(
            "SIGTERM: the gang stops at its next report (should_stop()); exit in %.0fs at the latest", delay
        )
        signal.signal(signal.SIGALRM, _on_deadline)
        signal.setitimer(signal.ITIMER_REAL, delay)
        return
    _terminating = True
    log.warning("SIGTERM: flushing checkpoints and reports before exiting")
    raise SystemExit(SIGTERM_EXIT_CODE)


def _on_deadline(_signum: int, _frame: FrameType | None) -> None:
    global _terminating
    if _terminating:
        return
    _terminating = True
    log.warning("SIGTERM grace nearly over: flushing checkpoints and reports before exiting")
    raise SystemExit(SIGTERM_EXIT_CODE)


def _on_exit(close_session: CloseSession) -> None:
    global _terminating
    _terminating = True  # a SIGTERM now must not interrupt the flush
    try:
        failures = close_session(not _uncaught_exception)
    except BaseException as exc:
        failures = [exc] if isinstance(exc, Exception) else []
    if failures:
        for failure in failures:
            print(f"trainjob: {failure}", file=sys.stderr)
        print(
            f"trainjob: {len(failures)} failure(s) at exit: reports or checkpoints were not delivered",
            file=sys.stderr,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(SIGTERM_EXIT_CODE if _signalled else 1)
