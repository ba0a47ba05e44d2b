"""A phase plot: a heat map of one metric over two axes, averaged over seeds.

Cell (i, j) of the map over axes a (x) and b (y) holds

    mean{ m(run) : a(run) = A[i], b(run) = B[j] }     (over seeds),

left empty (white, marked `–`) where no run has a finite m. Values are written in the cells.
When the runs have further non-seed axes, each of their settings gets its own panel.
"""

from typing import Any

import numpy as np

from sam_edge.plots.spec import Heatmap
from sam_edge.studies import summary, trends


class PhaseError(ValueError):
  """Phase-plot options that do not fit the runs (one line)."""


def check(phase_axes: list[str], metric: str, axes: list[str]) -> list[str]:
  """Problems of `--phase_axes` / `--phase_metric` against the available axes (one line each)."""
  found = []
  if len(phase_axes) != 2 or phase_axes[0] == phase_axes[1]:
    found.append(f"--phase_axes needs two different axes, got {','.join(phase_axes)}")
  for a in phase_axes:
    if a not in axes:
      found.append(f"--phase_axes: {a} is not a swept axis (axes: {', '.join(axes) or 'none'})")
  if metric and metric not in summary.METRICS:
    found.append(f"--phase_metric must be one of {', '.join(summary.METRICS)}, got {metric}")
  return found


def grid(rows: list[dict[str, Any]], a: str, b: str, metric: str
         ) -> tuple[list[str], list[str], np.ndarray]:
  """(values of a, values of b, means[len(b), len(a)] with NaN for empty cells)."""
  xs = summary.sort_values({r.get(a) for r in rows})
  ys = summary.sort_values({r.get(b) for r in rows})
  cells = np.full((len(ys), len(xs)), np.nan)
  for j, y in enumerate(ys):
    for i, x in enumerate(xs):
      found = summary.metric_values([r for r in rows if r.get(a) == x and r.get(b) == y], metric)
      if found:
        cells[j, i] = float(np.mean(found))
  return xs, ys, cells


def phase_heatmaps(rows: list[dict[str, Any]], a: str, b: str, metric: str,
                   axes: list[str]) -> tuple[list[Heatmap], str]:
  """(the heat map(s) of `metric` over `a` (x) and `b` (y), one per setting of the other
  non-seed axes; the figure's title)."""
  others = [x for x in axes if x not in (a, b, summary.SEED)]
  panels: dict[tuple, list] = {}
  for r in rows:
    panels.setdefault(tuple(r.get(o) for o in others), []).append(r)
  label = trends.METRIC_LABELS.get(metric, metric)
  maps = []
  for key, members in panels.items():
    xs, ys, cells = grid(members, a, b, metric)
    title = ", ".join(f"{o}={v}" for o, v in zip(others, key)) if others else ""
    maps.append(Heatmap(title, a, b, xs, ys, cells, colorbar=label))
  seeds = " (mean over seeds)" if summary.SEED in axes and summary.SEED not in (a, b) else ""
  return maps, f"{label} over {a} and {b}{seeds}"
