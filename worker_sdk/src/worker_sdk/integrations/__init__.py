"""Framework callbacks, as Ray Train's, with Ray's names less the ``Ray`` prefix.

- :mod:`worker_sdk.integrations.transformers` (``pip install "trainjob-sdk[transformers]"``):
  ``ReportCallback`` (Ray's ``ray.train.huggingface.transformers.RayTrainReportCallback``) and
  ``prepare_trainer``.
- :mod:`worker_sdk.integrations.lightning` (``pip install "trainjob-sdk[lightning]"``):
  ``ReportCallback``, ``DDPStrategy``, ``LightningEnvironment`` and ``prepare_trainer`` (Ray's
  ``ray.train.lightning.RayTrainReportCallback``, ``RayDDPStrategy``, ``RayLightningEnvironment``).

Each module imports its framework when imported; ``import worker_sdk`` never does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from worker_sdk.protocol import MetricValue


def report_ready(metrics: Mapping[str, Any]) -> dict[str, MetricValue]:
    """A framework's logged values as reportable metrics: numbers (tensors' ``.item()``), strings,
    booleans and None kept; a non-finite number becomes its string (``report`` refuses NaN: a
    diverged run's loss is still recorded, as ``'nan'``); anything else is left out."""
    ready: dict[str, MetricValue] = {}
    for key, value in metrics.items():
        if hasattr(value, "item") and callable(value.item):
            try:
                value = value.item()
            except (RuntimeError, ValueError):  # a tensor of more than one element
                continue
        if isinstance(value, bool) or value is None or isinstance(value, str):
            ready[str(key)] = value
        elif isinstance(value, int | float):
            ready[str(key)] = value if math.isfinite(value) else str(value)
    return ready
