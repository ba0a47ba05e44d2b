"""Final metrics against one swept axis: one panel per metric, one line per value of the other
non-seed axes, each point the mean over seeds with a min–max error bar.

For axis a, metric m and a line L (a setting of the other non-seed axes), the point at value v is

    mean{ m(run) : run in L, a(run) = v },   bar from the min to the max of the same set.

Numeric axis values are placed at their value; other values at 0, 1, 2, ... with their text as
tick labels. Runs without a finite m are left out of its panel.
"""

from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure

from sam_edge.studies import summary

METRIC_LABELS = {
    "test_error": "test error", "test_loss": "test loss", "final_lambda1": "final λ1",
    "median_lambda1_over_edge": "median λ1/edge (2nd half)", "steps": "steps"}
PANEL_SIZE = (4.2, 3.6)


def panel_metrics(rows: list[dict[str, Any]]) -> list[str]:
  """The metrics drawn: the test metric(s) present, final λ1 and the median λ1/edge."""
  wanted = ("test_error", "test_loss", "final_lambda1", "median_lambda1_over_edge")
  return [m for m in wanted if summary.has_metric(rows, m)]


def points(rows: list[dict[str, Any]], axis: str, metric: str,
           values: list[str]) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
  """(indices into `values`, mean, min, max) of `metric` over the rows at each value of `axis`."""
  idx, mean, lo, hi = [], [], [], []
  for i, value in enumerate(values):
    found = summary.metric_values([r for r in rows if r.get(axis) == value], metric)
    if found:
      idx.append(i)
      mean.append(float(np.mean(found)))
      lo.append(min(found))
      hi.append(max(found))
  return idx, np.array(mean), np.array(lo), np.array(hi)


def metric_figure(rows: list[dict[str, Any]], axis: str, axes: list[str]) -> Optional[Figure]:
  """The figure of every metric against `axis`; None when no run has any metric."""
  metrics = panel_metrics(rows)
  if not metrics:
    return None
  values = summary.sort_values({r.get(axis) for r in rows})
  nums = summary.numeric(values)
  xs = np.array(nums if nums is not None else range(len(values)), dtype=np.float64)
  others = [a for a in axes if a not in (axis, summary.SEED)]
  lines: dict[tuple, list] = {}
  for r in rows:
    lines.setdefault(tuple(r.get(a) for a in others), []).append(r)
  fig = Figure(figsize=(PANEL_SIZE[0] * len(metrics), PANEL_SIZE[1]), layout="constrained")
  for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
    for n, (key, members) in enumerate(lines.items()):
      idx, mean, lo, hi = points(members, axis, metric, values)
      if not idx:
        continue
      label = ", ".join(f"{a}={v}" for a, v in zip(others, key)) or None
      ax.errorbar(xs[idx], mean, yerr=np.stack([mean - lo, hi - mean]), marker="o",
                  markersize=4, capsize=3, linewidth=1.2, color=f"C{n % 10}", label=label)
    if nums is None:
      ax.set_xticks(xs, values, rotation=30, ha="right")
    ax.set_xlabel(axis)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3)
    if metric == "median_lambda1_over_edge":
      ax.axhline(1.0, color="black", linestyle=":", linewidth=1.0)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize="x-small")
  seeds = "mean and min–max over seeds" if summary.SEED in axes else "one run per point"
  fig.suptitle(f"final metrics against {axis} ({seeds})")
  return fig
