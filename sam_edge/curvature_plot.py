"""The curvature beyond λ1 against the step: tr(H) with its standard error, λ_min, and the
per-layer top eigenvalues, one panel each (only the panels whose quantity was measured).

Reads a run's raw data (records with `trace`/`trace_stderr`, `min_eigenvalue`, `per_layer`).
Panels are drawn with `plots.draw_on` from `PlotSpec`s, on an explicit Figure (no pyplot state),
and written atomically; this module does not import jax.
"""

from typing import Any, Mapping

from matplotlib.figure import Figure

from sam_edge import plots

XLABEL = plots.XLABEL


def has_curvature(record: Mapping[str, Any]) -> bool:
  return any(key in record for key in ("trace", "min_eigenvalue", "per_layer"))


def specs(raw: Mapping[str, Any], title: str) -> list[plots.PlotSpec]:
  """One spec per measured quantity (empty list when none was measured)."""
  recs = [r for r in raw.get("records") or [] if has_curvature(r)]
  out = []
  with_trace = [r for r in recs if "trace" in r]
  if with_trace:
    steps = [r["step"] for r in with_trace]
    value = [r["trace"] for r in with_trace]
    low = [r["trace"] - 2 * r["trace_stderr"] for r in with_trace]
    high = [r["trace"] + 2 * r["trace_stderr"] for r in with_trace]
    band = {"color": "tab:blue", "linestyle": ":", "linewidth": 0.8}
    out.append(plots.PlotSpec(
        title=f"{title}: trace", xlabel=XLABEL, ylabel="tr(H)",
        series=[plots.Series("tr(H)", steps, value, {"color": "tab:blue"}),
                plots.Series("± 2 standard errors", steps, low, band),
                plots.Series("_nolegend_", steps, high, band)]))
  with_min = [r for r in recs if "min_eigenvalue" in r]
  if with_min:
    out.append(plots.PlotSpec(
        title=f"{title}: most negative eigenvalue", xlabel=XLABEL, ylabel="λ_min",
        series=[plots.Series("λ_min", [r["step"] for r in with_min],
                             [r["min_eigenvalue"] for r in with_min], {"color": "tab:purple"})],
        hlines=[plots.HLine("0", 0.0, {"color": "0.5", "linewidth": 0.8})]))
  with_layers = [r for r in recs if "per_layer" in r]
  if with_layers:
    names = list(with_layers[-1]["per_layer"])
    series = [plots.Series(name, [r["step"] for r in with_layers if name in r["per_layer"]],
                           [r["per_layer"][name]["eigenvalue"] for r in with_layers
                            if name in r["per_layer"]], {"color": plots.eig_colour(i, len(names))})
              for i, name in enumerate(names)]
    out.append(plots.PlotSpec(title=f"{title}: per-layer sharpness", xlabel=XLABEL,
                              ylabel="top eigenvalue of the layer's Hessian block",
                              series=series))
  return out


def curvature_figure(raw: Mapping[str, Any], title: str) -> Figure:
  """The panels of `specs`, stacked (a note when nothing was measured)."""
  panels = specs(raw, title) or [plots.PlotSpec(title=title, xlabel=XLABEL, ylabel="",
                                                series=[], note="no curvature measurements")]
  return plots.stacked_figure(panels)


def write_curvature_plot(raw: Mapping[str, Any], path: str, *, title: str) -> None:
  plots.save_figure(curvature_figure(raw, title), path)
