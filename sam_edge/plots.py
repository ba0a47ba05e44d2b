"""PDF figures of a run: Hessian eigenvalues, SAM edge, alignments and loss.

Every figure is drawn by one parameterised function, `build_figure`, from a
`PlotSpec` (title, axis labels, `Series` curves and `HLine` lines). The specs
are made from a run's raw data dict by small pure functions (`eigs_spec`,
`alignment_spec`, `loss_spec`), so they can be checked without drawing.

Figures are explicit `matplotlib.figure.Figure` objects, never pyplot's global
state, so drawing is safe in long runs and in threads, and importing this
module selects no backend. PDFs are rendered in memory and written with
`records.atomic_write_bytes`. This module does not import jax.
"""

import io
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from matplotlib.figure import Figure

from sam_edge import records as records_lib

XLABEL = "training step"
EIGS_YLABEL = "Hessian eigenvalue"
ALIGNMENT_YLABEL = "|cosine| with top Hessian eigenvector v1"
LOSS_YLABEL = "training loss"
SAM_EDGE_LABEL = "SAM edge"
TWO_OVER_ETA_LABEL = "2/η"
G_ALIGNMENT_LABEL = "|cos(∇L, v1)|"
SG_ALIGNMENT_LABEL = "|cos(∇L_SAM, v1)|"
NO_MEASUREMENTS = "no measurements"

FIGSIZE = (7.0, 4.5)
# Series with more points than this are thinned (keeping each bucket's
# minimum and maximum, so loss spikes survive) to keep PDFs small and fast.
MAX_PLOTTED_POINTS = 8000
# Series with at most this many points get small markers, so that sparse
# measurements (or a single one) stay visible.
MARKER_MAX_POINTS = 60


class Series(NamedTuple):
  """A curve: `style` holds keyword arguments for `Axes.plot`."""
  label: str
  xs: Sequence[float]
  ys: Sequence[float]
  style: Mapping[str, Any] = {}


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


class PlotSpec(NamedTuple):
  """Everything `build_figure` needs to draw one figure. `note` is written across an empty
  figure (e.g. "no measurements")."""
  title: str
  xlabel: str
  ylabel: str
  series: Sequence[Series]
  hlines: Sequence[HLine] = ()
  ylim: tuple[float, float] | None = None
  log_y: bool = False
  legend_loc: str = "best"
  vlines: Sequence[VLine] = ()
  note: str | None = None


# ---------------------------------------------------------------------------
# Number helpers.


def _as_float(value: Any) -> float:
  """Returns `value` as a float, NaN for None or anything non-numeric."""
  try:
    return float(value)
  except (TypeError, ValueError):
    return math.nan


def finite_points(xs: Sequence[Any],
                  ys: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
  """Returns the (x, y) pairs where both are finite numbers, as float arrays.

  Args:
    xs: x values (None or non-numeric entries count as NaN).
    ys: y values, as long as `xs`.

  Returns:
    Two float64 arrays of equal length.
  """
  x = np.array([_as_float(v) for v in xs], dtype=np.float64)
  y = np.array([_as_float(v) for v in ys], dtype=np.float64)
  n = min(len(x), len(y))
  x, y = x[:n], y[:n]
  keep = np.isfinite(x) & np.isfinite(y)
  return x[keep], y[keep]


def thin_points(x: np.ndarray, y: np.ndarray,
                max_points: int = MAX_PLOTTED_POINTS
               ) -> tuple[np.ndarray, np.ndarray]:
  """Thins a long series to about `max_points`, keeping extremes.

  The points are split into `max_points // 2` consecutive buckets, and each
  bucket keeps its minimum and maximum (in their original order).

  Args:
    x: x values.
    y: y values, as long as `x`.
    max_points: the most points to keep; shorter series are unchanged.

  Returns:
    The kept (x, y).
  """
  n = len(x)
  if n <= max_points:
    return x, y
  buckets = max(1, max_points // 2)
  edges = np.linspace(0, n, buckets + 1).astype(np.int64)
  keep = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    if hi <= lo:
      continue
    chunk = y[lo:hi]
    keep.extend(sorted({lo + int(np.argmin(chunk)), lo + int(np.argmax(chunk))}))
  index = np.array(keep, dtype=np.int64)
  return x[index], y[index]


# ---------------------------------------------------------------------------
# Drawing.


def build_figure(spec: PlotSpec) -> Figure:
  """Draws one figure from `spec`, without saving it.

  Non-finite points are dropped; on a log y axis non-positive ones too.
  Horizontal lines with a non-finite y are left out. Every series and line
  gets a legend entry, even when it has no points (a series labelled
  "_nolegend_" gets none).

  Args:
    spec: what to draw.

  Returns:
    The figure (not attached to pyplot).
  """
  fig = Figure(figsize=FIGSIZE, layout="constrained")
  draw_on(fig.add_subplot(), spec)
  return fig


def stacked_figure(panels: Sequence[PlotSpec]) -> Figure:
  """The panels drawn one above the other (each 0.8 of a figure's height), without saving."""
  width, height = FIGSIZE
  fig = Figure(figsize=(width, height * len(panels) * 0.8), layout="constrained")
  for i, spec in enumerate(panels):
    draw_on(fig.add_subplot(len(panels), 1, i + 1), spec)
  return fig


def positive_log_y(series: Sequence[Series]) -> bool:
  """Whether a log y axis suits `series`: some finite point, and every finite point > 0."""
  values = np.array([_as_float(v) for s in series for v in s.ys], dtype=float)
  finite = values[np.isfinite(values)]
  return bool(len(finite)) and bool(np.all(finite > 0))


def draw_on(ax: Any, spec: PlotSpec) -> None:
  """Draws `spec` on the matplotlib Axes `ax` (see `build_figure`)."""
  for s in spec.series:
    x, y = finite_points(s.xs, s.ys)
    if spec.log_y:
      x, y = x[y > 0], y[y > 0]
    x, y = thin_points(x, y)
    style = dict(s.style)
    if len(x) <= MARKER_MAX_POINTS:
      style.setdefault("marker", "o")
      style.setdefault("markersize", 3)
    ax.plot(x, y, label=s.label, **style)
  for h in spec.hlines:
    y = _as_float(h.y)
    if not math.isfinite(y) or (spec.log_y and y <= 0):
      continue
    ax.axhline(y, label=h.label, **dict(h.style))
  for v in spec.vlines:
    if math.isfinite(_as_float(v.x)):
      ax.axvline(_as_float(v.x), label=v.label, **dict(v.style))
  if spec.note:
    ax.text(0.5, 0.5, spec.note, transform=ax.transAxes, ha="center", va="center",
            fontsize="large", color="0.4")
  if spec.log_y:
    ax.set_yscale("log")
  if spec.ylim is not None:
    ax.set_ylim(*spec.ylim)
  ax.set_title(spec.title)
  ax.set_xlabel(spec.xlabel)
  ax.set_ylabel(spec.ylabel)
  ax.grid(True, alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(loc=spec.legend_loc, fontsize="small")


def figure_pdf_bytes(fig: Figure) -> bytes:
  """Renders `fig` as PDF bytes in memory."""
  buf = io.BytesIO()
  fig.savefig(buf, format="pdf", metadata={"Creator": "sam-edge"})
  return buf.getvalue()


def save_figure(fig: Figure, path: str) -> None:
  """Writes `fig` as a PDF at `path`, atomically."""
  records_lib.atomic_write_bytes(path, figure_pdf_bytes(fig))


def plot_curves(path: str | None, *, title: str, xlabel: str, ylabel: str,
                series: Sequence[Series], hlines: Sequence[HLine] = (),
                ylim: tuple[float, float] | None = None, log_y: bool = False,
                legend_loc: str = "best") -> Figure:
  """Draws curves and horizontal lines, and writes the PDF if `path` is set.

  Args:
    path: the PDF to write; None or "" draws without writing.
    title: the axes title.
    xlabel: the x axis label.
    ylabel: the y axis label.
    series: the curves.
    hlines: the horizontal lines.
    ylim: fixed y limits, or None for automatic.
    log_y: whether the y axis is logarithmic.
    legend_loc: where the legend goes (matplotlib `loc`).

  Returns:
    The figure.
  """
  fig = build_figure(PlotSpec(title=title, xlabel=xlabel, ylabel=ylabel,
                              series=series, hlines=hlines, ylim=ylim,
                              log_y=log_y, legend_loc=legend_loc))
  if path:
    save_figure(fig, path)
  return fig


# ---------------------------------------------------------------------------
# From a run's raw data to figure specs.


def _records(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
  """The run's measurement records (an empty list if none)."""
  return list(raw.get("records") or [])


def eig_colour(i: int, k: int) -> Any:
  """A distinct colour for item i of k (an eigenvalue, a run's curve)."""
  if k <= 10:
    return f"C{i}"
  # Import here: only needed for unusually many eigenvalues.
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  return colormaps["viridis"](i / max(1, k - 1))


UNCONVERGED_LABEL = "not converged (residual > tol·|λ1|)"


def unconverged_series(recs: Sequence[Mapping[str, Any]]) -> list[Series]:
  """Hollow markers over the eigenvalues of measurements whose `converged` is False (one legend
  entry in all); empty when every measurement converged."""
  bad = [r for r in recs if r.get("converged") is False]
  if not bad:
    return []
  k = max(len(r.get("eigenvalues") or ()) for r in recs)
  out = []
  for i in range(k):
    xs = [r.get("step") for r in bad if i < len(r.get("eigenvalues") or ())]
    ys = [r["eigenvalues"][i] for r in bad if i < len(r.get("eigenvalues") or ())]
    style = {"color": eig_colour(i, k), "marker": "o", "markersize": 7,
             "markerfacecolor": "none", "linestyle": "none", "markeredgewidth": 1.2}
    out.append(Series(UNCONVERGED_LABEL if i == 0 else "_nolegend_", xs, ys, style))
  return out


def eigenvalue_label(i: int, kind: str | None = None) -> str:
  """The legend label of the i-th (0-based) Hessian eigenvalue; "|λ1|" for magnitudes."""
  name = f"|λ{i + 1}|" if kind == "magnitude" else f"λ{i + 1}"
  if i == 0:
    what = "top Hessian eigenvalue magnitude" if kind == "magnitude" else "top Hessian eigenvalue"
    return f"{name} ({what})"
  return name


def eigenvalue_series(recs: Sequence[Mapping[str, Any]]) -> list[Series]:
  """One series per tracked eigenvalue, λ1 first.

  The number of eigenvalues k is the longest `eigenvalues` list; a record
  with fewer contributes only to the ones it has. With no eigenvalues at all,
  an empty λ1 series is returned so the figure is still labelled.

  Args:
    recs: the run's records.

  Returns:
    k series (at least one).
  """
  k = max((len(r.get("eigenvalues") or ()) for r in recs), default=0)
  k = max(k, 1)
  out = []
  for i in range(k):
    xs, ys = [], []
    for r in recs:
      eigs = r.get("eigenvalues") or ()
      if i < len(eigs):
        xs.append(r.get("step"))
        ys.append(eigs[i])
    style = {"color": eig_colour(i, k), "linewidth": 1.6 if i == 0 else 1.0}
    kind = recs[-1].get("eigenvalue_kind") if recs else None
    out.append(Series(eigenvalue_label(i, kind), xs, ys, style))
  return out


def record_series(recs: Sequence[Mapping[str, Any]], key: str, label: str,
                  style: Mapping[str, Any]) -> Series:
  """A series of one record field against the step."""
  xs = [r.get("step") for r in recs]
  ys = [r.get(key) for r in recs]
  return Series(label, xs, ys, style)


def two_over_eta_marks(
    recs: Sequence[Mapping[str, Any]]) -> tuple[list[Series], list[HLine]]:
  """2/η as a horizontal line, or as a curve if it changed during the run.

  Args:
    recs: the run's records.

  Returns:
    (series, hlines): one of them holds one entry, or both are empty when no
    record has a finite 2/η.
  """
  style = {"color": "tab:red", "linestyle": "--", "linewidth": 1.2}
  xs, ys = finite_points([r.get("step", 0) for r in recs],
                         [r.get("two_over_eta") for r in recs])
  values = np.unique(ys)
  if not len(values):
    return [], []
  if len(values) == 1:
    return [], [HLine(TWO_OVER_ETA_LABEL, float(values[0]), style)]
  return [Series(TWO_OVER_ETA_LABEL, xs, ys, style)], []


REFERENCE_EDGES = (None, "2/η", "SAM-edge")   # edge labels drawn as the reference's SAM edge


def edge_series(recs: Sequence[Mapping[str, Any]]) -> list[Series]:
  """The method's stability edge against the step, labelled by its formula.

  Plain GD and normalised SAM (and pickles from before `edge_label` existed) draw the SAM edge
  as the reference does; another method draws its own `edge` under its `edge_label`, e.g.
  "(2+2β)/η, β=0.9"; a method without a known closed form (`edge` None) draws none.
  """
  style = {"color": "black", "linestyle": "-.", "linewidth": 1.4}
  labels = [r["edge_label"] for r in recs if "edge_label" in r]
  label = labels[-1] if labels else None
  if not labels or label in REFERENCE_EDGES[1:]:
    return [record_series(recs, "sam_edge", SAM_EDGE_LABEL, style)]
  if label is None:
    return []
  return [record_series(recs, "edge", label, style)]


def eigs_ylabel(recs: Sequence[Mapping[str, Any]]) -> str:
  if recs and recs[-1].get("operator") == "preconditioned_hessian":
    return "eigenvalue of P^-1/2 H P^-1/2 (Adam-preconditioned Hessian)"
  return EIGS_YLABEL


def eigs_spec(raw: Mapping[str, Any], title: str, *,
              with_two_over_eta: bool = True) -> PlotSpec:
  """The eigenvalue figure: λ1..λk, the method's edge (`edge_series`), optionally 2/η.

  Args:
    raw: the run's raw data.
    title: the figure title.
    with_two_over_eta: whether to draw 2/η (it can be far above the rest
      and squash the plot, hence the variant without it).

  Returns:
    The spec.
  """
  recs = _records(raw)
  if not recs:
    return PlotSpec(title=title, xlabel=XLABEL, ylabel=EIGS_YLABEL, series=[],
                    note=NO_MEASUREMENTS)
  series = eigenvalue_series(recs) + edge_series(recs)
  hlines = []
  if with_two_over_eta:
    extra_series, hlines = two_over_eta_marks(recs)
    series.extend(extra_series)
  series.extend(unconverged_series(recs))
  return PlotSpec(title=title, xlabel=XLABEL, ylabel=eigs_ylabel(recs),
                  series=series, hlines=hlines, legend_loc="best")


def alignment_spec(raw: Mapping[str, Any], title: str) -> PlotSpec:
  """The alignment figure: |cos| of ∇L and ∇L_SAM with v1, y in [0, 1]."""
  recs = _records(raw)
  if not recs:
    return PlotSpec(title=title, xlabel=XLABEL, ylabel=ALIGNMENT_YLABEL, series=[],
                    ylim=(0.0, 1.0), note=NO_MEASUREMENTS)
  series = [
      record_series(recs, "g_alignment", G_ALIGNMENT_LABEL,
                    {"color": "tab:blue"}),
      record_series(recs, "sg_alignment", SG_ALIGNMENT_LABEL,
                    {"color": "tab:orange"}),
  ]
  return PlotSpec(title=title, xlabel=XLABEL, ylabel=ALIGNMENT_YLABEL,
                  series=series, ylim=(0.0, 1.0), legend_loc="best")


def loss_points(raw: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
  """The training-loss curve: raw["losses"] if it has points, else records.

  Args:
    raw: the run's raw data.

  Returns:
    (steps, losses), possibly holding non-finite values.
  """
  losses = raw.get("losses") or {}
  steps = list(losses.get("step") or [])
  values = list(losses.get("loss") or [])
  if steps and values:
    return steps, values
  recs = _records(raw)
  return [r.get("step") for r in recs], [r.get("loss") for r in recs]


def loss_spec(raw: Mapping[str, Any], title: str) -> PlotSpec:
  """The loss figure; log y when every finite loss is positive."""
  steps, values = loss_points(raw)
  if not steps:
    return PlotSpec(title=title, xlabel=XLABEL, ylabel=LOSS_YLABEL, series=[],
                    note="no training steps")
  series = [Series(LOSS_YLABEL, steps, values,
                   {"color": "tab:blue", "linewidth": 0.8})]
  log_y = positive_log_y(series)
  vlines = []
  diverged_at = (raw.get("final") or {}).get("diverged_at_step")
  if diverged_at is not None:
    vlines.append(VLine(f"diverged at step {diverged_at}", diverged_at,
                        {"color": "tab:red", "linestyle": ":", "linewidth": 1.5}))
  return PlotSpec(title=title, xlabel=XLABEL, ylabel=LOSS_YLABEL,
                  series=series, log_y=log_y, legend_loc="upper right", vlines=vlines)


def all_specs(raw: Mapping[str, Any], title: str) -> dict[str, PlotSpec]:
  """The four figures of a run, keyed like `write_all_plots`'s outputs."""
  return {
      "eigs_curve": eigs_spec(raw, title, with_two_over_eta=True),
      "eigs_se_only": eigs_spec(raw, title, with_two_over_eta=False),
      "alignment_curve": alignment_spec(raw, title),
      "loss_curve": loss_spec(raw, title),
  }


def write_all_plots(raw: Mapping[str, Any], *,
                    eigs_curve_output: str | None = None,
                    eigs_se_only_output: str | None = None,
                    alignment_curve_output: str | None = None,
                    loss_curve_output: str | None = None,
                    title: str) -> None:
  """Writes the run's four PDFs; a None or "" output is skipped.

  Args:
    raw: the run's raw data (config, records, optional losses, final).
    eigs_curve_output: λ1..λk, SAM edge and 2/η.
    eigs_se_only_output: λ1..λk and SAM edge, without 2/η.
    alignment_curve_output: gradient alignments with v1.
    loss_curve_output: training loss.
    title: the title of every figure, e.g. "mnist MLP, ρ=0.1, η=0.01".
  """
  outputs = {
      "eigs_curve": eigs_curve_output,
      "eigs_se_only": eigs_se_only_output,
      "alignment_curve": alignment_curve_output,
      "loss_curve": loss_curve_output,
  }
  if not any(outputs.values()):
    return
  specs = all_specs(raw, title)
  for name, path in outputs.items():
    if path:
      save_figure(build_figure(specs[name]), path)
