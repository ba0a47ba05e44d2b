"""A phase plot: a heat map of one metric over two axes, averaged over seeds.

Cell (i, j) of the map over axes a (x) and b (y) holds

    mean{ m(run) : a(run) = A[i], b(run) = B[j] }     (over seeds),

left empty (white, marked `–`) where no run has a finite m. Values are written in the cells.
When the runs have further non-seed axes, each of their settings gets its own panel.
"""

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sam_edge.studies import summary, trends

PANEL_SIZE = (4.8, 4.0)


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


def phase_figure(rows: list[dict[str, Any]], a: str, b: str, metric: str,
                 axes: list[str]) -> Figure:
  """The heat map(s) of `metric` over `a` (x) and `b` (y)."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  others = [x for x in axes if x not in (a, b, summary.SEED)]
  panels: dict[tuple, list] = {}
  for r in rows:
    panels.setdefault(tuple(r.get(o) for o in others), []).append(r)
  fig = Figure(figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]), layout="constrained")
  cmap = colormaps["viridis"].with_extremes(bad="white")
  for ax, (key, members) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
    xs, ys, cells = grid(members, a, b, metric)
    if not cells.size:
      ax.text(0.5, 0.5, f"no run has values of {a} and {b}", ha="center", transform=ax.transAxes)
      continue
    image = ax.imshow(np.ma.masked_invalid(cells), origin="lower", aspect="auto", cmap=cmap)
    lo, hi = np.nanmin(cells, initial=np.inf), np.nanmax(cells, initial=-np.inf)
    for (j, i), value in np.ndenumerate(cells):
      # viridis is light in its top 40%: dark text there, light text below
      light = np.isnan(value) or (hi > lo and (value - lo) / (hi - lo) > 0.6)
      ax.text(i, j, "–" if np.isnan(value) else f"{value:.3g}", ha="center", va="center",
              fontsize="small", color="black" if light else "white")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    if others:
      ax.set_title(", ".join(f"{o}={v}" for o, v in zip(others, key)), fontsize="small")
    if np.isfinite(cells).any():
      fig.colorbar(image, ax=ax, label=trends.METRIC_LABELS.get(metric, metric))
  seeds = " (mean over seeds)" if summary.SEED in axes and summary.SEED not in (a, b) else ""
  fig.suptitle(f"{trends.METRIC_LABELS.get(metric, metric)} over {a} and {b}{seeds}")
  return fig
