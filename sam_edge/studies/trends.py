"""Final metrics against one swept axis: one panel per metric, one line per value of the other
non-seed axes, each point the mean over seeds with an error bar.

For axis a, metric m and a line L (a setting of the other non-seed axes), the point at value v is
the mean of the set M = { m(run) : run in L, a(run) = v } (a cell, `cells.py`), with a bar

    ci95     mean ± t_{0.975, n−1} · s/√n, the 95% Student-t interval of the mean (s the sample
             standard deviation of M, n = |M|; no bar for n = 1)        (the default)
    minmax   from min M to max M.

Numeric axis values are placed at their value; other values at 0, 1, 2, ... with their text as
tick labels. Runs without a finite m are left out of its panel. The figure's title says which
bars it draws.
"""

from typing import Any, Optional

import numpy as np

from sam_edge.plots.spec import HLine, Panel, Series
from sam_edge.studies import evaluated, intervals, summary

ERROR_BARS = ("ci95", "minmax")
BAR_TEXT = {"ci95": "95% t-interval", "minmax": "min–max"}
# The metrics drawn against an axis (those some run has).
DRAWN = ("test_error", "test_loss", "validation_error", "final_lambda1", "median_lambda1_over_edge")

METRIC_LABELS = {
    "test_error": "test error", "test_loss": "test loss", "final_lambda1": "final λ1",
    "median_lambda1_over_edge": "median λ1/edge (2nd half)", "steps": "steps",
    "final_trace": "final tr H", "mc": "mode connectivity mc", "line_barrier": "line barrier",
    "cka": "CKA of outputs", "dist": "‖θi − θj‖", "final_train_loss": "training loss (last epoch)",
    "ensemble_error": "ensemble test error", "validation_error": "validation error",
    "validation_loss": "validation loss",
    **{evaluated.column(s, m): f"{s} {label} (evaluated)" for s in evaluated.SPLITS
       for m, label in (("loss", "loss"), ("error", "error"), ("top5", "top-5 error"))},
    **{evaluated.column(s, m): f"{label} (evaluated{'' if s == 'train' else f', {s}'})"
       for s in evaluated.SPLITS for m, label in (("lambda1", "λ1"), ("trace", "tr H"))}}


def points(rows: list[dict[str, Any]], axis: str, metric: str, values: list[str],
           error_bars: str) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
  """(indices into `values`, mean, lower, upper) of `metric` over the rows at each value of
  `axis`, the bars as `error_bars` says (module doc)."""
  idx, mean, lo, hi = [], [], [], []
  for i, value in enumerate(values):
    found = summary.metric_values([r for r in rows if r.get(axis) == value], metric)
    if found:
      s = intervals.stats(found)
      idx.append(i)
      mean.append(s.mean)
      lo.append(min(found) if error_bars == "minmax" else s.lower)
      hi.append(max(found) if error_bars == "minmax" else s.upper)
  return idx, np.array(mean), np.array(lo), np.array(hi)


def metric_panels(rows: list[dict[str, Any]], axis: str, axes: list[str], error_bars: str
                  ) -> Optional[tuple[list[Panel], str]]:
  """(one panel per metric against `axis`, the figure's title, which names the bars); None when
  no run has any metric."""
  metrics = [m for m in DRAWN if summary.has_metric(rows, m)]
  if not metrics:
    return None
  values = summary.sort_values({r.get(axis) for r in rows})
  nums = summary.numeric(values)
  xs = np.array(nums if nums is not None else range(len(values)), dtype=np.float64)
  others = [a for a in summary.non_seed(axes) if a != axis]
  lines = summary.groups(rows, lambda r: tuple(r.get(a) for a in others))
  panels = []
  for metric in metrics:
    series = []
    for n, (key, members) in enumerate(lines.items()):
      idx, mean, lo, hi = points(members, axis, metric, values, error_bars)
      if idx:
        label = ", ".join(f"{a}={v}" for a, v in zip(others, key)) or "_nolegend_"
        series.append(Series(label, xs[idx], mean, {"color": f"C{n % 10}", "linewidth": 1.2},
                             lower=lo, upper=hi, bars=True))
    hlines = ([HLine("_nolegend_", 1.0, {"color": "black", "linestyle": ":", "linewidth": 1.0})]
              if metric == "median_lambda1_over_edge" else [])
    panels.append(Panel("", axis, METRIC_LABELS.get(metric, metric), series, hlines,
                        xticks=None if nums is not None else (list(xs), values)))
  seeds = (f"mean over seeds, bars: {BAR_TEXT[error_bars]}" if summary.SEED in axes
           else "one run per point")
  return panels, f"final metrics against {axis} ({seeds})"
