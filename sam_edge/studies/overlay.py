"""Curves of many runs on one figure: λ1/edge and the training loss, seeds of one configuration
drawn as their mean with a min–max band.

Runs that differ only in `seed` (reference runs apart from the others) form one curve. Colour =
the value of the first non-seed axis; line style = the values of the other axes. The x axis is the
training step, or the training time (s) when asked for or, by default (`auto`), when a reference
raw.txt run is among them (those have no steps). On a step axis a reference run is placed at its
measurement index, and the axis label says so.

A band's members are put on a common grid: their own x values when they all share them, else
the union of their x values inside the range they all cover, each member linearly interpolated.
"""

from typing import Any, Callable

import numpy as np

from sam_edge.plots import figure
from sam_edge.plots.spec import XLABEL, HLine, Panel, Series, colour
from sam_edge.studies import sources, summary

X_AXES = ("auto", "step", "time")
LINESTYLES = ("-", "--", ":", "-.")
Curve = tuple[np.ndarray, np.ndarray]


def resolve_x_axis(runs: list[sources.Run], requested: str) -> str:
  """`step` or `time`: `auto` is `time` when a reference run is among `runs`, else `step`."""
  if requested != "auto":
    return requested
  return "time" if any(r.kind == "reference" for r in runs) else "step"


def x_label(runs: list[sources.Run], x_axis: str) -> str:
  """The x-axis label, saying how reference runs are placed."""
  label, note = (("training time (s)", " (reference raw.txt runs have no steps)")
                 if x_axis == "time" else (XLABEL, " (reference raw.txt runs: measurement index)"))
  return label + (note if any(r.kind == "reference" for r in runs) else "")


def _records_curve(run: sources.Run, x_axis: str, value: Callable[[dict], Any]) -> Curve:
  """`value(record)` of each record against its time, or its step (its index when it has none)."""
  step = lambda r: r.get("step") if r.get("step") is not None else r.get("index")
  xs = [r.get("time") if x_axis == "time" else step(r) for r in run.records]
  return figure.finite_points(xs, [value(r) for r in run.records])


def ratio_curve(run: sources.Run, x_axis: str) -> Curve:
  """λ1/edge of each record against the step (or time)."""
  return _records_curve(run, x_axis, summary.ratio)


def loss_curve(run: sources.Run, x_axis: str) -> Curve:
  """The training loss: every step from `losses` on a step axis (when there), else the loss of
  each measurement."""
  steps, losses = run.losses
  if x_axis == "step" and steps and losses:
    return figure.finite_points(steps, losses)
  return _records_curve(run, x_axis, lambda r: r.get("loss"))


def mean_band(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(x, mean, min, max) of several curves on a common grid (see the module docstring)."""
  if all(np.array_equal(c[0], curves[0][0]) for c in curves):
    grid = curves[0][0]
    ys = np.stack([c[1] for c in curves])
  else:
    lo, hi = max(c[0].min() for c in curves), min(c[0].max() for c in curves)
    grid = np.unique(np.concatenate([c[0] for c in curves]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    orders = [np.argsort(x, kind="stable") for x, _ in curves]
    ys = np.stack([np.interp(grid, x[o], y[o]) for (x, y), o in zip(curves, orders)])
  return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def group_styles(runs: list[sources.Run], axes: list[str]) -> dict[tuple, dict]:
  """{group key: {"members", "color", "linestyle", "label"}} in order of first appearance."""
  free = summary.non_seed(axes)
  group = lambda r: (tuple((a, summary.value_of(r, a)) for a in free), r.kind == "reference")
  groups = {key: {"members": members} for key, members in summary.groups(runs, group).items()}
  colour_values = summary.sort_values({summary.value_of(r, free[0]) for r in runs}) if free else []
  others = list(dict.fromkeys(setting[1:] for setting, _ in groups))  # ((axis, value), ...)
  for index, ((setting, reference), g) in enumerate(groups.items()):
    if free:
      value = setting[0][1]
      slot = colour_values.index(value) if value in colour_values else len(colour_values)
      g["color"] = colour(slot, len(colour_values) + 1)
      g["linestyle"] = LINESTYLES[others.index(setting[1:]) % len(LINESTYLES)]
    else:
      g["color"], g["linestyle"] = colour(index, len(groups)), "-"
    label = ", ".join(f"{a}={v}" for a, v in setting if v is not None) or g["members"][0].name
    n = len(g["members"])
    g["label"] = (label + (" (reference)" if reference else "")
                  + (f" (mean, min–max of {n} seeds)" if n > 1 else ""))
  return groups


def curves_panel(runs: list[sources.Run], axes: list[str], x_axis: str,
                 curve: Callable[[sources.Run, str], Curve], *, title: str, ylabel: str,
                 hlines: tuple = (), log_y: bool = False) -> Panel:
  """One curve (or mean and min–max band) per seed group."""
  series = []
  for g in group_styles(runs, axes).values():
    style = {"color": g["color"], "linestyle": g["linestyle"], "linewidth": 1.2}
    found = [c for c in (curve(r, x_axis) for r in g["members"]) if len(c[0])]
    if len(found) > 1:
      x, mean, lo, hi = mean_band(found)
      series.append(Series(g["label"], x, mean, style, lower=lo, upper=hi))
    else:
      x, y = found[0] if found else ([], [])
      series.append(Series(g["label"], x, y, style))
  return Panel(title, x_label(runs, x_axis), ylabel, series, hlines, log_y=log_y)


def edge_labels(runs: list[sources.Run]) -> list[str]:
  """The records' edge labels (`2/η`, `SAM-edge`, ...), in order of first appearance; older
  pickles without `edge_label` count as `SAM-edge` (their edge is `sam_edge`)."""
  labels = (r.get("edge_label") or ("SAM-edge" if "edge" not in r else None)
            for run in runs for r in run.records)
  return [label for label in dict.fromkeys(labels) if label]


def ratio_panel(runs: list[sources.Run], axes: list[str], x_axis: str) -> Panel:
  """λ1/edge against step (or time) for every run, with the line λ1 = edge; the y label names
  the edges met (e.g. `λ1 / edge (2/η, SAM-edge)`)."""
  labels = edge_labels(runs)
  return curves_panel(runs, axes, x_axis, ratio_curve,
                      title="top Hessian eigenvalue over the stability edge",
                      ylabel="λ1 / edge" + (f" ({', '.join(labels)})" if labels else ""),
                      hlines=(HLine("λ1 = edge", 1.0,
                                    {"color": "black", "linestyle": ":", "linewidth": 1.0}),))


def loss_panel(runs: list[sources.Run], axes: list[str], x_axis: str) -> Panel:
  """Training-loss curves of every run; log y when every loss is positive."""
  ys = np.concatenate([loss_curve(r, x_axis)[1] for r in runs] or [np.zeros(0)])
  log_y = bool(len(ys)) and bool(np.all(ys > 0))
  return curves_panel(runs, axes, x_axis, loss_curve, title="training loss",
                      ylabel="training loss", log_y=log_y)
