"""The operator and the local API server make full garbage collections rare.

Both hold a heap that grows with what they watch or store while most of what they allocate dies
young; with Python's default thresholds, full collections of that whole heap kept coming (with
the young and middle ones, a third of the operator's CPU at 1000 TrainJobs x 8 pods,
`bench/RESULTS.md`, "Round five"). The test drives the collector of a fresh interpreter with
that pattern, once with the defaults (full collections happen: the control) and once as each
process tunes it (none happen), so it fails if the tuning stops taking effect, say under a
Python whose collector reads the thresholds otherwise. A fresh interpreter, because how many
full collections come depends on the size of the heap already there (a collection waits until
what was promoted since the last one is a quarter of it), and a test worker's heap is whatever
the tests before left.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_CHURN = """
import gc, json
{setup}
thresholds = gc.get_threshold()
gc.collect()
young, full = gc.get_stats()[0]["collections"], gc.get_stats()[2]["collections"]
kept = []
for i in range(140_000):
    item = {{"i": i, "parts": [[] for _ in range(8)]}}
    cycle = []
    cycle.append(cycle)  # garbage only the collector frees
    if i % 4 == 0:
        kept.append(item)  # a heap that grows
stats = gc.get_stats()
print(json.dumps([thresholds, stats[0]["collections"] - young, stats[2]["collections"] - full]))
"""

_OPERATOR = "from trainjob_operator.controller.running import tune_garbage_collector"
_APISERVER = "from localcluster.apiserver.__main__ import tune_garbage_collector"


def _collections(setup: str) -> tuple[list[int], int, int]:
    """(thresholds, young collections, full collections) of a fresh interpreter that ran
    `setup`, then the churn."""
    done = subprocess.run(
        [sys.executable, "-c", _CHURN.format(setup=setup)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    thresholds, young, full = json.loads(done.stdout)
    return thresholds, young, full


def test_python_defaults_collect_the_whole_heap_often() -> None:
    # The same modules imported as in the tuned runs, so the heaps compare.
    thresholds, young, full = _collections(f"{_OPERATOR}\n{_APISERVER}")
    assert thresholds == [700, 10, 10]
    assert young >= 300
    assert full >= 2


@pytest.mark.parametrize("module", [_OPERATOR, _APISERVER], ids=["operator", "apiserver"])
def test_tuned_process_makes_no_full_collection(module: str) -> None:
    thresholds, young, full = _collections(f"{module}\ntune_garbage_collector()")
    assert thresholds == [700, 10, 1000]
    assert young >= 300  # young garbage is still collected as often as by default
    assert full == 0
