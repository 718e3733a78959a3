"""The operator and the local API server make full garbage collections rare.

Both hold a heap that grows with what they watch or store while most of what they allocate dies
young; with Python's default thresholds, full collections of that whole heap kept coming (with
the young and middle ones, a third of the operator's CPU at 1000 TrainJobs x 8 pods,
`bench/RESULTS.md`, "Round five"). The
test drives this interpreter's collector with that pattern, once with the defaults (full
collections happen: the control) and once as each process tunes it (none happen), so it fails if
the tuning stops taking effect, say under a Python whose collector reads the thresholds otherwise.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from localcluster.apiserver.__main__ import tune_garbage_collector as tune_apiserver
from trainjob_operator.controller.running import tune_garbage_collector as tune_operator

PYTHON_DEFAULTS = (700, 10, 10)


@pytest.fixture(autouse=True)
def _restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def _collections_while_the_heap_grows(rounds: int = 140_000) -> tuple[int, int]:
    """(young, full) collections while a quarter of new containers is kept and the rest dies,
    some of it in reference cycles that only the collector frees: a watch-fed heap."""
    gc.collect()  # from empty generations, whatever ran in this process before
    young, full = gc.get_stats()[0]["collections"], gc.get_stats()[2]["collections"]
    kept = []
    for i in range(rounds):
        item = {"i": i, "parts": [[] for _ in range(8)]}
        cycle: list[object] = []
        cycle.append(cycle)
        if i % 4 == 0:
            kept.append(item)
    stats = gc.get_stats()
    del kept
    return stats[0]["collections"] - young, stats[2]["collections"] - full


def test_python_defaults_collect_the_whole_heap_often() -> None:
    gc.set_threshold(*PYTHON_DEFAULTS)
    young, full = _collections_while_the_heap_grows()
    assert young >= 300
    assert full >= 2


@pytest.mark.parametrize("tune", [tune_operator, tune_apiserver], ids=["operator", "apiserver"])
def test_tuned_process_makes_no_full_collection(tune: Callable[[], None]) -> None:
    tune()
    young, full = _collections_while_the_heap_grows()
    assert young >= 300  # young garbage is still collected as often as by default
    assert full == 0
