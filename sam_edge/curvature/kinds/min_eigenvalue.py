"""The most negative curvature λ_min with its residual (`curvature.extremes`):
`--measure_min_eigenvalue`.

Records `min_eigenvalue`, `min_eigenvalue_residual`, `min_eigenvalue_hvps`. Lanczos on −H,
warm-started from the previous measurement's eigenvector (its state), capped by
`--min_eigenvalue_max_steps`, with the top eigenvalue's tolerance `--lanczos_tol`.
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from sam_edge.curvature.kind import Inputs, WarmLanczosKind
from sam_edge.options import Option
from sam_edge.plots.spec import XLABEL, HLine, Panel, Series


@dataclasses.dataclass(frozen=True)
class MinEigenvalueSettings:
  """Lanczos on −H, warm-started from the previous measurement's eigenvector."""
  max_steps: int = 80
  tol: float = 1e-4
  min_steps: int = 3


class MinEigenvalue(WarmLanczosKind):
  name, seed = "min_eigenvalue", 4
  settings_type = MinEigenvalueSettings
  cap_flag = "--min_eigenvalue_max_steps"
  record_keys = ("min_eigenvalue", "min_eigenvalue_residual", "min_eigenvalue_hvps")
  options = (
      Option("measure_min_eigenvalue", False, "Measure λ_min, the smallest (most negative) "
             "Hessian eigenvalue, with its residual."),
      Option("min_eigenvalue_max_steps", 80, "Cap on Lanczos steps for λ_min (it converges more "
             "slowly than λ1)."),
  )

  def settings(self, values: Mapping[str, Any]) -> Optional[MinEigenvalueSettings]:
    if not values["measure_min_eigenvalue"]:
      return None
    steps = values["min_eigenvalue_max_steps"]
    return MinEigenvalueSettings(max_steps=steps, tol=values["lanczos_tol"],
                                 min_steps=min(3, steps))

  def measure(self, inputs: Inputs, settings: MinEigenvalueSettings, key: Any, state: Any
              ) -> tuple[dict, Any]:
    from sam_edge.curvature import extremes, hvp  # pylint: disable=import-outside-toplevel
    objective, params, batch = inputs.objective, inputs.params, inputs.batch
    matvec, flat, _ = hvp.operator(objective.loss, params, batch)
    return extremes.min_eigenpair(matvec, state.astype(flat.dtype), key,
                                  max_steps=settings.max_steps, tol=settings.tol,
                                  min_steps=settings.min_steps)

  def line(self, record: Mapping[str, Any]) -> str:
    return f" | λmin {record['min_eigenvalue']:.6g}"

  def scalars(self, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"curvature/min_eigenvalue": record["min_eigenvalue"]}

  def panels(self, records: Sequence[Mapping[str, Any]], title: str) -> list[Panel]:
    return [Panel(f"{title}: most negative eigenvalue", XLABEL, "λ_min",
                  [Series("λ_min", [r["step"] for r in records],
                          [r["min_eigenvalue"] for r in records], {"color": "tab:purple"})],
                  hlines=[HLine("0", 0.0, {"color": "0.5", "linewidth": 0.8})])]


MIN_EIGENVALUE = MinEigenvalue()
