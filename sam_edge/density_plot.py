"""The Hessian's spectral density (SLQ) at a few measurements, overlaid, on a log y scale.

Reads a run's raw data: records holding `density = {"nodes": [P, m], "weights": [P, m]}` (the
SLQ nodes and weights, as pickled). Up to `max_curves` of them, spread evenly over the run (the
first and the last always among them), are drawn as the Gaussian-broadened density

    ρ(t) = (1/P) Σ_p Σ_j w_pj φ_σ(t − θ_pj)          (`curvature.spectrum.smoothed_density`)

on one grid with one σ for all curves: `width_fraction` (1%) of the spectral width spanned by
every drawn node. The y axis is logarithmic, so a few isolated outlier eigenvalues (weight ~1/n)
show beside the bulk; values below `floor` (1e-7) times the highest peak are cut off (the
Gaussian tails would otherwise reach 1e-300). Drawn by `plots.build_figure` (an explicit Figure,
no pyplot state) and written atomically; this module does not import jax.
"""

from typing import Any, Mapping

import numpy as np

from sam_edge import plots
from sam_edge.curvature import spectrum

XLABEL = "Hessian eigenvalue"
YLABEL = "spectral density (SLQ, Gaussian-broadened)"
MAX_CURVES = 4
FLOOR = 1e-7


def density_records(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
  """The records that hold a density with at least one node."""
  out = []
  for r in raw.get("records") or []:
    density = r.get("density") if isinstance(r, Mapping) else None
    if density and np.size(density.get("nodes", [])) > 0:
      out.append(r)
  return out


def spread(count: int, max_curves: int) -> list[int]:
  """Up to `max_curves` indices in range(count), evenly spread, first and last included."""
  if count <= max_curves:
    return list(range(count))
  return sorted({int(round(i)) for i in np.linspace(0, count - 1, max_curves)})


def density_spec(raw: Mapping[str, Any], title: str, *, max_curves: int = MAX_CURVES,
                 width_fraction: float = spectrum.DEFAULT_WIDTH_FRACTION,
                 num_points: int = spectrum.DEFAULT_GRID_POINTS, floor: float = FLOOR
                 ) -> plots.PlotSpec:
  """The figure's spec (module doc); no series when no record holds a density."""
  recs = density_records(raw)
  chosen = [recs[i] for i in spread(len(recs), max_curves)]
  series, ylim = [], None
  if chosen:
    all_nodes = np.concatenate([np.ravel(r["density"]["nodes"]) for r in chosen]).astype(float)
    sigma = spectrum.default_sigma(all_nodes, width_fraction)
    grid = spectrum.density_grid(all_nodes, sigma, num_points)
    peak = 0.0
    for i, r in enumerate(chosen):
      rho = spectrum.smoothed_density(r["density"]["nodes"], r["density"]["weights"], grid, sigma)
      peak = max(peak, float(np.max(rho)))
      series.append(plots.Series(f"step {r.get('step', '?')}", grid, rho,
                                 {"color": f"C{i}", "linewidth": 1.2}))
    if peak > 0:
      ylim = (peak * floor, peak * 2.0)
  return plots.PlotSpec(title=title, xlabel=XLABEL, ylabel=YLABEL, series=series, ylim=ylim,
                        log_y=True, legend_loc="upper right")


def write_density_plot(raw: Mapping[str, Any], path: str, *, title: str,
                       max_curves: int = MAX_CURVES) -> None:
  """Draws `density_spec` and writes it as a PDF at `path`, atomically (nothing when path is "")."""
  if path:
    plots.save_figure(plots.build_figure(density_spec(raw, title, max_curves=max_curves)), path)

