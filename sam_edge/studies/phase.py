"""A phase plot: heat maps of the metrics over two axes, averaged over seeds.

Cell (i, j) of the map of metric m over axes a (x) and b (y) holds

    mean{ m(run) : a(run) = A[i], b(run) = B[j] }     (over seeds),

left empty (white, marked `–`) where no run has a finite m. Values are written in the cells.
One panel per metric (every metric some run has, or only `--phase_metric`), and per setting of
the runs' further non-seed axes. The panels come in the order of the taxonomy's notebook
(Load_temperature_plots.ipynb, `TAXONOMY`): test error, training loss, CKA, λ1, tr H, mode
connectivity, distance, each from the first of its columns some run has (a post-hoc evaluation
before the run's own value), then every other metric. The taxonomy's conventions (Yang et al.
2021): both axes logarithmic where their values are positive numbers (each cell centred on its
value; else one cell per value, in order), a (e.g. width) increasing to the right and b (e.g.
batch size) downwards, so small batches are at the top; mc and the line barrier on a diverging
colour map centred at 0 (red above, blue below: blue is a barrier); λ1 and the trace with
logarithmic colours.
"""

from typing import Any

import numpy as np

from sam_edge.plots.spec import Heatmap
from sam_edge.studies import evaluated, summary, trends


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


CENTRED = ("mc", "line_barrier")                 # diverging colours around 0
LOG = ("final_lambda1", "final_trace", *(c for c in evaluated.COLUMNS
                                         if c.startswith(evaluated.CURVATURE)))   # log colours
# The notebook's seven panels in order, each drawn from the first of its columns some row has.
TAXONOMY = (("test_error",), ("train_loss_full", "final_train_loss"), ("cka",),
            ("lambda1_post", "final_lambda1"), ("trace_post", "final_trace"), ("mc",), ("dist",))


def metrics_drawn(rows: list[dict[str, Any]], metric: str | None) -> list[str]:
  """`[metric]`, or every metric of `summary.METRICS` some row has (`steps` left out): the
  notebook's panels first (`TAXONOMY`), then the others in `summary.METRICS` order."""
  if metric:
    return [metric]
  found = [m for m in summary.METRICS if m != "steps" and summary.has_metric(rows, m)]
  first = [next(c for c in slot if c in found) for slot in TAXONOMY
           if any(c in found for c in slot)]
  return first + [m for m in found if m not in first] or ["test_loss"]     # no row has any


def phase_heatmaps(rows: list[dict[str, Any]], a: str, b: str, metric: str | None,
                   axes: list[str]) -> tuple[list[Heatmap], str]:
  """(the heat maps over `a` (x) and `b` (y): one per metric drawn and per setting of the other
  non-seed axes, in the module doc's conventions; the figure's title)."""
  others = [x for x in axes if x not in (a, b, summary.SEED)]
  panels = summary.groups(rows, lambda r: tuple(r.get(o) for o in others))
  drawn = metrics_drawn(rows, metric)
  maps = []
  for m in drawn:
    label = trends.METRIC_LABELS.get(m, m)
    for key, members in panels.items():
      xs, ys, cells = grid(members, a, b, m)
      where = ", ".join(f"{o}={v}" for o, v in zip(others, key))
      title = ", ".join(t for t in (label if len(drawn) > 1 else "", where) if t)
      maps.append(Heatmap(title, a, b, xs, ys, cells, colorbar=label,
                          centre=0.0 if m in CENTRED else None, log=m in LOG, invert_y=True,
                          xvalues=summary.numeric(xs), yvalues=summary.numeric(ys),
                          log_axes=True))
  seeds = " (mean over seeds)" if summary.SEED in axes and summary.SEED not in (a, b) else ""
  what = trends.METRIC_LABELS.get(drawn[0], drawn[0]) if len(drawn) == 1 else "metrics"
  return maps, f"{what} over {a} and {b}{seeds}"
