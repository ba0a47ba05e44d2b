"""The figure engine: panels (`spec.Panel`, `spec.Heatmap`, `spec.Contour`) -> a matplotlib
Figure -> a PDF.

One way to make a figure, `build(panels, columns=1, title=None)`, and one way to write it,
`write(path, panels, ...)` (rendered in memory, written atomically with `records`). Figures are
explicit `matplotlib.figure.Figure` objects, never pyplot's global state, so drawing is safe in
long runs and in threads, and importing this module selects no backend. No jax here.

Drawing rules: non-finite points are dropped (on a log axis non-positive ones too); series longer
than MAX_PLOTTED_POINTS are thinned keeping each bucket's minimum and maximum (loss spikes
survive); series of at most MARKER_MAX_POINTS points get small markers (a single measurement
stays visible); horizontal lines at a non-finite y are left out; every series and line gets a
legend entry, even with no points (a series labelled "_nolegend_" gets none).
"""

import io
import math
from typing import Any, Optional, Sequence, Union

import numpy as np
from matplotlib import colormaps, colors, ticker
from matplotlib.figure import Figure

from sam_edge import records
from sam_edge.plots.spec import Contour, Heatmap, Panel, Series, as_float

FIGSIZE = (7.0, 4.5)                 # one panel
STACKED_HEIGHT = 0.8 * FIGSIZE[1]    # each panel of a stacked figure
GRID_PANEL = (4.6, 3.8)              # each panel of a figure with several columns
MAX_PLOTTED_POINTS = 8000
MARKER_MAX_POINTS = 60
AnyPanel = Union[Panel, Heatmap, Contour]


def finite_points(*columns: Sequence[Any]) -> tuple[np.ndarray, ...]:
  """The entries where every column is a finite number, one float64 array per column (None and
  non-numeric entries count as NaN; the longer columns are cut to the shortest): e.g. the (x, y)
  pairs of a curve."""
  n = min(len(c) for c in columns)
  rows = np.array([[as_float(v) for v in c[:n]] for c in columns], dtype=np.float64)
  return tuple(rows[:, np.isfinite(rows).all(axis=0)])


def thin_points(x: np.ndarray, y: np.ndarray, max_points: int = MAX_PLOTTED_POINTS
                ) -> tuple[np.ndarray, np.ndarray]:
  """About `max_points` of a long series: `max_points // 2` consecutive buckets each keep their
  minimum and maximum, in their original order; shorter series are returned unchanged."""
  if len(x) <= max_points:
    return x, y
  edges = np.linspace(0, len(x), max(1, max_points // 2) + 1).astype(np.int64)
  keep = []
  for lo, hi in zip(edges[:-1], edges[1:]):         # none is empty: len(x) > max_points
    keep.extend(sorted({lo + int(np.argmin(y[lo:hi])), lo + int(np.argmax(y[lo:hi]))}))
  return x[keep], y[keep]


def _series(ax: Any, s: Series, panel: Panel) -> None:
  banded = s.lower is not None and s.upper is not None
  rows = np.array(finite_points(s.xs, s.ys, *((s.lower, s.upper) if banded else ())))
  if panel.log_y:                                   # y, and a band's lower bound, positive
    rows = rows[:, (rows[1:3] > 0).all(axis=0)]
  style = dict(s.style)
  if banded and s.bars:
    x, y, lo, hi = rows
    ax.errorbar(x, y, yerr=np.stack([y - lo, hi - y]), label=s.label,
                **{"marker": "o", "markersize": 4, "capsize": 3, **style})
    return
  if banded:
    if rows.shape[1] > MAX_PLOTTED_POINTS:
      rows = rows[:, np.linspace(0, rows.shape[1] - 1, MAX_PLOTTED_POINTS).astype(np.int64)]
    ax.fill_between(rows[0], rows[2], rows[3], color=style.get("color"), alpha=0.2, linewidth=0)
    x, y = rows[:2]
  else:
    x, y = thin_points(*rows)
  if len(x) <= MARKER_MAX_POINTS:
    style = {"marker": "o", "markersize": 3, **style}
  ax.plot(x, y, label=s.label, **style)


def draw_panel(ax: Any, panel: Panel) -> None:
  """Draws a `Panel` on the matplotlib Axes `ax` (module doc)."""
  for s in panel.series:
    _series(ax, s, panel)
  for h in panel.hlines:
    y = as_float(h.y)
    if math.isfinite(y) and not (panel.log_y and y <= 0):
      ax.axhline(y, label=h.label, **dict(h.style))
  for v in panel.vlines:
    if math.isfinite(as_float(v.x)):
      ax.axvline(as_float(v.x), label=v.label, **dict(v.style))
  if panel.note:
    ax.text(0.5, 0.5, panel.note, transform=ax.transAxes, ha="center", va="center",
            fontsize="large", color="0.4")
  if panel.log_y:
    ax.set_yscale("log")
  if panel.log_x:
    ax.set_xscale("log")
  if panel.ylim is not None:
    ax.set_ylim(*panel.ylim)
  if panel.xticks is not None:
    ax.set_xticks(panel.xticks[0], panel.xticks[1], rotation=30, ha="right")
  ax.set_title(panel.title, fontsize="medium")
  ax.set(xlabel=panel.xlabel, ylabel=panel.ylabel)
  ax.grid(True, alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(loc=panel.legend_loc, fontsize="small")


def _value_norm(finite: np.ndarray, log: bool, centre: Optional[float] = None
                ) -> colors.Normalize:
  """Colours from the smallest finite value to the largest: logarithmic with `log` when they are
  positive and not all equal, else linear ([lo, lo + 1] for one value, [0, 1] for none); with a
  `centre`, linear and symmetric about it, out to the farthest value (±1 for none)."""
  if centre is not None:
    span = float(np.max(np.abs(finite - centre), initial=0.0)) or 1.0
    return colors.Normalize(centre - span, centre + span)
  lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
  if log and lo > 0 and hi > lo:
    return colors.LogNorm(lo, hi)
  return colors.Normalize(lo, hi if hi > lo else lo + 1.0)


def _positive(values: Optional[Sequence[float]], n: int) -> bool:
  """Whether `values` are n finite positive numbers (a log axis can hold them)."""
  if values is None or len(values) != n or n == 0:
    return False
  (v,) = finite_points(values)
  return len(v) == n and bool(np.all(v > 0))


def log_edges(centres: np.ndarray) -> np.ndarray:
  """The n + 1 cell edges of n increasing positive centres on a log axis: the geometric means
  of neighbours, the outer edges as far beyond the end centres as the inner ones (a lone
  centre c gets c/√2 and c·√2)."""
  v = np.log(centres)
  if len(v) == 1:
    return np.exp(v[0] + np.array([-0.5, 0.5]) * np.log(2.0))
  mids = 0.5 * (v[1:] + v[:-1])
  return np.exp(np.concatenate([[2 * v[0] - mids[0]], mids, [2 * v[-1] - mids[-1]]]))


def cell_positions(centres: Sequence[float], values: Any) -> np.ndarray:
  """Where `values` fall on an axis whose cells (0, 1, ...) stand for the increasing numbers
  `centres`: linear between neighbouring centres, extrapolated from the end cells beyond them;
  with a single cell, 0 for its own value and NaN (not drawn) for any other."""
  c = np.asarray(centres, dtype=np.float64)
  v = np.array([as_float(x) for x in values], dtype=np.float64)
  if len(c) < 2:
    return np.where(v == c[0], 0.0, np.nan) if len(c) else np.full(v.shape, np.nan)
  below = (v - c[0]) / (c[1] - c[0])
  above = len(c) - 1 + (v - c[-1]) / (c[-1] - c[-2])
  return np.where(v < c[0], below, np.where(v > c[-1], above, np.interp(v, c, np.arange(len(c)))))


def _heatmap_curves(ax: Any, h: Heatmap, shape: tuple[int, int], log: bool) -> None:
  """The heat map's `curves`: on log axes at their own values, else placed by `cell_positions`
  (given `xvalues` and `yvalues`) and clipped by the map's edges."""
  if not h.curves or not (log or (h.xvalues is not None and h.yvalues is not None)):
    return
  for s in h.curves:
    style = dict(s.style)
    x, y = s.xs, s.ys
    if not log:
      x, y = cell_positions(h.xvalues, s.xs), cell_positions(h.yvalues, s.ys)
      if np.isfinite(x).sum() == 1:
        style.setdefault("marker", "o")
    ax.plot(x, y, label=s.label, **style)
  if not log:
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(*((shape[0] - 0.5, -0.5) if h.invert_y else (-0.5, shape[0] - 0.5)))
  ax.legend(loc="best", fontsize="x-small")


def draw_heatmap(ax: Any, h: Heatmap) -> None:
  """Draws a `Heatmap` on `ax`, with a colour bar beside it when any cell has a value."""
  values = np.array(h.values, dtype=np.float64).reshape(len(h.ylabels), len(h.xlabels))
  if not values.size:
    ax.text(0.5, 0.5, f"no values of {h.xlabel} and {h.ylabel}", ha="center",
            transform=ax.transAxes)
    return
  cmap = colormaps["viridis" if h.centre is None else "RdBu_r"].with_extremes(bad="white")
  norm = _value_norm(values[np.isfinite(values)], h.log, h.centre)
  log = h.log_axes and _positive(h.xvalues, len(h.xlabels)) and _positive(h.yvalues,
                                                                           len(h.ylabels))
  if log:
    xs, ys = np.asarray(h.xvalues, np.float64), np.asarray(h.yvalues, np.float64)
    image = ax.pcolormesh(log_edges(xs), log_edges(ys), np.ma.masked_invalid(values),
                          cmap=cmap, norm=norm)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    if h.invert_y:
      ax.invert_yaxis()
  else:
    xs, ys = np.arange(len(h.xlabels)), np.arange(len(h.ylabels))
    image = ax.imshow(np.ma.masked_invalid(values), origin="upper" if h.invert_y else "lower",
                      aspect="auto", cmap=cmap, norm=norm)
  for (j, i), value in np.ndenumerate(values):
    if np.isnan(value) or h.annotate:
      r, g, b, _ = cmap(norm(value))
      light = np.isnan(value) or 0.299 * r + 0.587 * g + 0.114 * b > 0.5
      ax.text(xs[i], ys[j], "–" if np.isnan(value) else f"{value:.3g}", ha="center",
              va="center", fontsize="small", color="black" if light else "white")
  _heatmap_curves(ax, h, values.shape, log)
  ax.set_xticks(xs, h.xlabels, rotation=45 if len(h.xlabels) > 8 else 0)
  ax.set_yticks(ys, h.ylabels)
  ax.set(xlabel=h.xlabel, ylabel=h.ylabel)
  ax.set_title(h.title, fontsize="medium")
  if np.isfinite(values).any():
    ax.figure.colorbar(image, ax=ax, label=h.colorbar)


def draw_contour(ax: Any, c: Contour) -> None:
  """Draws a `Contour` on `ax` (filled levels, thin lines, `points` on top, a colour bar); a
  constant surface gets one level band, an all-NaN one a note."""
  values = np.array(c.values, dtype=np.float64).reshape(len(c.yvalues), len(c.xvalues))
  finite = values[np.isfinite(values)]
  ax.set(xlabel=c.xlabel, ylabel=c.ylabel)
  ax.set_title(c.title, fontsize="medium")
  if not finite.size:
    ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    return
  norm = _value_norm(finite, c.log)
  spacing = np.geomspace if isinstance(norm, colors.LogNorm) else np.linspace
  levels = spacing(norm.vmin, norm.vmax, max(c.levels, 2))
  masked = np.ma.masked_invalid(values)
  filled = ax.contourf(c.xvalues, c.yvalues, masked, levels=levels, cmap="viridis", norm=norm)
  ax.contour(c.xvalues, c.yvalues, masked, levels=levels, colors="k", linewidths=0.3,
             alpha=0.5)
  for s in c.points:
    x, y = finite_points(s.xs, s.ys)
    style = {"marker": "*", "markersize": 12, "linestyle": "none", **dict(s.style)}
    ax.plot(x, y, label=s.label, **style)
  if c.points:
    ax.legend(loc="best", fontsize="small")
  ax.figure.colorbar(filled, ax=ax, label=c.colorbar,
                     ticks=levels[::max(1, len(levels) // 6)], format="%.3g")


def build(panels: Sequence[AnyPanel], *, columns: int = 1, title: Optional[str] = None
          ) -> Figure:
  """The panels drawn row by row, `columns` to a row (one column: stacked), without saving."""
  n = max(len(panels), 1)
  columns = max(1, min(columns, n))
  rows = -(-n // columns)
  if columns == 1:
    size = (FIGSIZE[0], FIGSIZE[1] if n == 1 else STACKED_HEIGHT * n)
  else:
    size = (GRID_PANEL[0] * columns, GRID_PANEL[1] * rows)
  fig = Figure(figsize=size, layout="constrained")
  for i, panel in enumerate(panels):
    draw = {Heatmap: draw_heatmap, Contour: draw_contour}.get(type(panel), draw_panel)
    draw(fig.add_subplot(rows, columns, i + 1), panel)
  if title:
    fig.suptitle(title)
  return fig


def write(path: str, panels: Sequence[AnyPanel], *, columns: int = 1,
          title: Optional[str] = None) -> Figure:
  """Builds the figure and writes it as a PDF at `path` (rendered in memory, written atomically);
  returns the figure."""
  fig = build(panels, columns=columns, title=title)
  pdf = io.BytesIO()
  fig.savefig(pdf, format="pdf", metadata={"Creator": "sam-edge"})
  records.atomic_write_bytes(path, pdf.getvalue())
  return fig
