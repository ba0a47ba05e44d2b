"""The Hessian's spectral density by stochastic Lanczos quadrature (`curvature.slq`):
`--measure_density`, drawn in its own PDF, `--density_output`.

Records `density` = {`nodes`, `weights`} ([probes][steps]) and `density_hvps`. The figure overlays
up to MAX_CURVES measurements, spread evenly over the run (the first and the last among them), as
the Gaussian-broadened density

    ρ(t) = (1/P) Σ_p Σ_j w_pj φ_σ(t − θ_pj)          (`curvature.spectrum.smoothed_density`)

on one grid with one σ for all curves (1% of the spectral width of every drawn node), on a log y
scale, so that a few isolated outlier eigenvalues (weight ~1/n) show beside the bulk; values below
FLOOR times the highest peak are cut off (the Gaussian tails would reach 1e-300).
"""

import dataclasses
from typing import Any, Mapping, Optional

import numpy as np

from sam_edge.curvature import spectrum
from sam_edge.curvature.kind import Inputs, Kind
from sam_edge.options import Option
from sam_edge.plots.spec import FigureOutput, Panel, Series

XLABEL = "Hessian eigenvalue"
YLABEL = "spectral density (SLQ, Gaussian-broadened)"
MAX_CURVES = 4
FLOOR = 1e-7


@dataclasses.dataclass(frozen=True)
class DensitySettings:
  """SLQ with `probes` probes of `steps` Lanczos steps (`--density_probes`, `--density_steps`)."""
  probes: int = 2
  steps: int = 90
  probe: str = "rademacher"


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


def density_panels(raw: Mapping[str, Any], title: str) -> list[Panel]:
  """The density figure (module doc); none when no record holds a density."""
  recs = density_records(raw)
  if not recs:
    return []
  chosen = [recs[i] for i in spread(len(recs), MAX_CURVES)]
  all_nodes = np.concatenate([np.ravel(r["density"]["nodes"]) for r in chosen]).astype(float)
  sigma = spectrum.default_sigma(all_nodes)
  grid = spectrum.density_grid(all_nodes, sigma)
  series, peak = [], 0.0
  for i, r in enumerate(chosen):
    rho = spectrum.smoothed_density(r["density"]["nodes"], r["density"]["weights"], grid, sigma)
    peak = max(peak, float(np.max(rho)))
    series.append(Series(f"step {r.get('step', '?')}", grid, rho,
                         {"color": f"C{i}", "linewidth": 1.2}))
  ylim = (peak * FLOOR, peak * 2.0) if peak > 0 else None
  return [Panel(title, XLABEL, YLABEL, series, ylim=ylim, log_y=True, legend_loc="upper right")]


class Density(Kind):
  name, seed = "density", 2
  settings_type = DensitySettings
  record_keys = ("density", "density_hvps")
  options = (
      Option("measure_density", False, "Measure the Hessian's spectral density by stochastic "
             "Lanczos quadrature; nodes and weights are pickled and drawn in --density_output."),
      Option("density_probes", 2, "Random probes of the spectral density."),
      Option("density_steps", 90, "Lanczos steps (= HVPs) per density probe."),
  )
  figures = (FigureOutput("density_output", "/tmp/density.pdf", "PDF: the Hessian's spectral "
                          "density (SLQ) at a few measurements, log scale; written with "
                          "--measure_density", density_panels),)

  def settings(self, values: Mapping[str, Any]) -> Optional[DensitySettings]:
    if not values["measure_density"]:
      return None
    return DensitySettings(probes=values["density_probes"], steps=values["density_steps"])

  def problems(self, settings: DensitySettings) -> list[str]:
    if settings.probes < 1 or settings.steps < 1:
      return [f"--density_probes/--density_steps: density probes and steps must be >= 1, got "
              f"{settings.probes} and {settings.steps}"]
    return []

  def size_problems(self, settings: DensitySettings, num_params: int) -> list[str]:
    if settings.steps > num_params:
      return [f"--density_steps={settings.steps} exceeds the {num_params} parameters"]
    return []

  def measure(self, inputs: Inputs, settings: DensitySettings, key: Any, state: Any
              ) -> tuple[dict, Any]:
    from sam_edge.curvature import hvp, slq  # pylint: disable=import-outside-toplevel
    objective, params, batch = inputs.objective, inputs.params, inputs.batch
    matvec, flat, _ = hvp.operator(objective.loss, params, batch)
    out = slq.slq(matvec, flat.shape[0], flat.dtype, key, num_probes=settings.probes,
                  num_steps=settings.steps, probe=settings.probe)
    return {"density": {"nodes": out["nodes"], "weights": out["weights"]},
            "density_hvps": out["hvps"]}, state


DENSITY = Density()
