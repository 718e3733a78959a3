"""What the framework callbacks report: a framework's logged values made reportable (the
callbacks themselves run as TrainJobs in tests/e2e/test_framework_callbacks.py)."""

from __future__ import annotations

import math

import torch

from worker_sdk.integrations import report_ready


def test_logged_values_become_reportable_metrics() -> None:
    logged = {
        "loss": torch.tensor(0.25),
        "grad_norm": math.inf,  # fp16 overflow: kept as text, report() refuses non-finite numbers
        "eval_loss": float("nan"),
        "epoch": 1.5,
        "step": 7,
        "done": False,
        "note": "warmup",
        "skipped": None,
        "per_class": [0.1, 0.2],  # not a metric value: left out
        "vector": torch.tensor([1.0, 2.0]),  # more than one element: left out
    }
    assert report_ready(logged) == {
        "loss": 0.25,
        "grad_norm": "inf",
        "eval_loss": "nan",
        "epoch": 1.5,
        "step": 7,
        "done": False,
        "note": "warmup",
        "skipped": None,
    }
