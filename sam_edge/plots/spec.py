"""What a figure shows, as plain data: panels of curves and lines, heat maps, and the output
flags that name figures. `plots.figure` draws them; building them needs neither matplotlib nor
jax, so every layer can say what it wants drawn (a curvature kind its panel, a study its phase
plot) and tests can check it without drawing.
"""

import colorsys
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

XLABEL = "training step"
NO_MEASUREMENTS = "no measurements"


class Series(NamedTuple):
  """A curve; `style` holds keyword arguments for `Axes.plot`. With `lower` and `upper` (as long
  as `ys`) it gets a shaded band between them or, with `bars`, error bars from them."""
  label: str
  xs: Sequence[float]
  ys: Sequence[float]
  style: Mapping[str, Any] = {}
  lower: Optional[Sequence[float]] = None
  upper: Optional[Sequence[float]] = None
  bars: bool = False


class HLine(NamedTuple):
  """A horizontal line: `style` holds keyword arguments for `Axes.axhline`."""
  label: str
  y: float
  style: Mapping[str, Any] = {}


class VLine(NamedTuple):
  """A vertical line (e.g. the step where training diverged)."""
  label: str
  x: float
  style: Mapping[str, Any] = {}


class Panel(NamedTuple):
  """One set of axes. `note` is written across an empty panel (e.g. "no measurements");
  `xticks` = (positions, labels) for categorical x values."""
  title: str
  xlabel: str
  ylabel: str
  series: Sequence[Series]
  hlines: Sequence[HLine] = ()
  ylim: Optional[tuple[float, float]] = None
  log_y: bool = False
  legend_loc: str = "best"
  vlines: Sequence[VLine] = ()
  note: Optional[str] = None
  log_x: bool = False
  xticks: Optional[tuple[Sequence[float], Sequence[str]]] = None


class Heatmap(NamedTuple):
  """A grid of values [len(ylabels), len(xlabels)] (NaN: an empty cell, drawn white with `–`),
  each cell's value written in it unless `annotate` is False. `centre`: a diverging colour map
  centred there (e.g. 0); `log`: logarithmic colours; `invert_y`: the first row at the top.
  `curves` are drawn over the map in the axes' own values: with `xvalues` and `yvalues` (the
  numbers the columns and rows stand for, increasing) a point (x, y) lands between the cells
  by linear interpolation between their centres (extrapolated past the ends, clipped by the
  map's edges). `log_axes` (with positive `xvalues` and `yvalues`): both axes logarithmic,
  each cell centred on its value and reaching halfway (in log) to its neighbours, curves drawn
  at their own values."""
  title: str
  xlabel: str
  ylabel: str
  xlabels: Sequence[str]
  ylabels: Sequence[str]
  values: Any
  colorbar: str = ""
  centre: Optional[float] = None
  log: bool = False
  invert_y: bool = False
  xvalues: Optional[Sequence[float]] = None
  yvalues: Optional[Sequence[float]] = None
  curves: Sequence[Series] = ()
  annotate: bool = True
  log_axes: bool = False


class Contour(NamedTuple):
  """Filled contours of `values` [len(yvalues), len(xvalues)] over the increasing numbers
  `xvalues` (columns) and `yvalues` (rows), with thin contour lines and a colour bar; `levels`
  levels, evenly spaced between the smallest and largest finite value, in log when `log` and
  every finite value is positive; `points` (Series, e.g. one point per run) drawn over it."""
  title: str
  xlabel: str
  ylabel: str
  xvalues: Sequence[float]
  yvalues: Sequence[float]
  values: Any
  colorbar: str = ""
  levels: int = 30
  log: bool = False
  points: Sequence[Series] = ()


class FigureOutput(NamedTuple):
  """A PDF a run writes: its output flag, the flag's default and help, and the panels drawn from
  the run's raw data (`panels(raw, title)`; an empty list: nothing to draw, nothing written)."""
  flag: str
  default: str
  help: str
  panels: Callable[[Mapping[str, Any], str], list[Panel]]


def records_of(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
  """A run's measurement records (an empty list if none)."""
  return list(raw.get("records") or [])


def colour(i: int, k: int) -> str:
  """A distinct colour for item i of k (an eigenvalue, a run's curve): matplotlib's C0..C9 for up
  to ten items, else k hues around the colour wheel."""
  if k <= 10:
    return f"C{i}"
  r, g, b = colorsys.hsv_to_rgb(0.8 * i / max(1, k - 1), 0.75, 0.8)
  return f"#{int(255 * r):02x}{int(255 * g):02x}{int(255 * b):02x}"


def as_float(value: Any) -> float:
  """`value` as a float, NaN for None or anything non-numeric."""
  try:
    return float(value)
  except (TypeError, ValueError):
    return math.nan


def finite(value: Any) -> bool:
  """Whether `value` is a finite number (None and non-numbers are not)."""
  return math.isfinite(as_float(value))


def positive_values(series: Sequence[Series]) -> bool:
  """Whether a log y axis suits `series`: some finite point, and every finite point > 0."""
  values = [float(v) for s in series for v in s.ys if finite(v)]
  return bool(values) and min(values) > 0
