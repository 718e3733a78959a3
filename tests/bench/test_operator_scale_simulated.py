"""Smoke test of `bench.operator_scale --simulated` (goal 2's scenario): a few TrainJobs whose
pods run on simulated nodes, so CI keeps the scenario working. Timing is the benchmark's
business; this asserts only what could break: every job succeeds by its pods' exit codes with
no coordinator reporting, the counts are there, and the plain client posted the same pods, before
the scenario and after it."""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import run_scenario


@pytest.mark.slow
def test_operator_scale_simulated() -> None:
    (line,) = run_scenario(
        "-m", "bench.operator_scale", "--simulated", "--jobs", "3", "--workers", "2", "--duration", "1"
    )
    assert line["scenario"] == "operator_scale_simulated"
    ours = line["ours"]
    assert ours["succeeded"] == 3, ours["phases"]
    assert ours["phases"] == {"Succeeded": 3}
    assert ours["all_pods_exist_s"] is not None and ours["all_pods_running_s"] is not None
    writes = ours["writes_per_job_by_verb_mean"]
    # The operator wrote each job's pods once, and took each pod's gang gate off once (a pass
    # that saw a stale gate used to patch again and get 422s).
    assert writes["POST pods"] == 2 and writes["PATCH pods"] == 2
    for kind in ("secrets", "services", "serviceaccounts", "roles", "rolebindings"):
        assert writes[f"POST {kind}"] == 1, writes
    assert ours["writes_per_job_besides_status_median"] > 0
    assert ours["operator_cpu_s"] > 0 and ours["operator_peak_rss_mib"] > 0
    # Read from the operator's metrics endpoint: young, middle, full collections in the scenario.
    young, middle, full = ours["operator_gc_collections"]
    assert young > 0 and 0 <= middle <= young and 0 <= full <= middle
    assert line["peer"]["pods"] == 6 and line["peer"]["plain_client_post_s"] > 0
    # The API server's CPU until every pod existed, and during the plain client's POSTs.
    assert ours["apiserver_cpu_s_until_all_pods_exist"] > 0
    assert line["peer"]["apiserver_cpu_s_during_plain_post"] >= 0
    # The peer ran before the scenario and after it; the goal's figures are the faster round's.
    rounds = line["peer"]["rounds"]
    assert set(rounds) == {"before", "after"}
    assert line["peer"]["plain_client_post_s"] == min(r["plain_client_post_s"] for r in rounds.values())
    assert ours["submit_s"] > 0
