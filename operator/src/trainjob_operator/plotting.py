"""The metric history as a PNG: one panel per metric against iteration, attempts marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from trainjob_operator.job_storage import HistoryPoint


def numeric_metric_names(points: Sequence[HistoryPoint]) -> list[str]:
    names: dict[str, None] = {}
    for point in points:
        for name, value in point.metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                names.setdefault(name)
    return list(names)


def plot_history(points: Sequence[HistoryPoint], path: Path, *, title: str) -> Path:
    """Write the plot; each attempt is its own line, and a dashed line marks where one began."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = numeric_metric_names(points)
    if not names:
        raise ValueError("the metric history has no numeric metric to plot")
    columns = min(2, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.2 * rows), squeeze=False)
    attempts = sorted({point.attempt for point in points})
    starts = {attempt: min(p.iteration for p in points if p.attempt == attempt) for attempt in attempts[1:]}
    for index, name in enumerate(names):
        axis = axes[index // columns][index % columns]
        for attempt in attempts:
            series = [
                (p.iteration, float(value))
                for p in points
                if p.attempt == attempt
                and isinstance(value := p.metrics.get(name), int | float)
                and not isinstance(value, bool)
            ]
            if series:
                xs, ys = zip(*series, strict=True)
                axis.plot(xs, ys, marker="o", markersize=3, label=f"attempt {attempt}")
        for attempt, start in starts.items():
            axis.axvline(start, color="grey", linestyle="--", linewidth=1)
            axis.annotate(
                f"attempt {attempt}",
                (start, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color="grey",
                va="top",
                ha="left",
            )
        axis.set_title(name)
        axis.set_xlabel("iteration")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if len(attempts) > 1:
            axis.legend(fontsize=8)
    for index in range(len(names), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
