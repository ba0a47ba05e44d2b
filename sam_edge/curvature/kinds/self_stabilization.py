"""The self-stabilization terms (Damian, Nichani and Lee, "Self-stabilization: the implicit bias
of gradient descent at the edge of stability", 2022): `--measure_self_stabilization`.

With S = uᵀ H u the measured sharpness λ1 (u its eigenvector) and ∇S = ∇³L[u, u] computed exactly
(`curvature.sharpness_gradient`), each measurement records

    sharpness_gradient_norm   ||∇S||
    progressive_sharpening    α = −∇L · ∇S     (dS/dt under gradient flow: S grows when α > 0)
    self_stabilization        β = ||∇S||²       (the restoring force once S passes 2/η)

For Adam's preconditioned sharpness, u = P^{-1/2} v1 (P fixed), so S is still uᵀ H u.
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from sam_edge.curvature.kind import Inputs, Kind
from sam_edge.options import Option
from sam_edge.plots.spec import XLABEL, HLine, Panel, Series


@dataclasses.dataclass(frozen=True)
class SelfStabilizationSettings:
  """No options: one ∇S per measurement."""


class SelfStabilization(Kind):
  name, seed = "self_stabilization", 7
  settings_type = SelfStabilizationSettings
  record_keys = ("sharpness_gradient_norm", "progressive_sharpening", "self_stabilization")
  options = (Option("measure_self_stabilization", False, "At each measurement, the gradient of "
                    "the sharpness ∇S = ∇³L[u, u] (exact): records ||∇S||, α = −∇L·∇S "
                    "(progressive sharpening) and β = ||∇S||² (self-stabilization)."),)

  def settings(self, values: Mapping[str, Any]) -> Optional[SelfStabilizationSettings]:
    return SelfStabilizationSettings() if values["measure_self_stabilization"] else None

  def measure(self, inputs: Inputs, settings: SelfStabilizationSettings, key: Any, state: Any
              ) -> tuple[dict, Any]:
    import optax  # pylint: disable=import-outside-toplevel

    from sam_edge.curvature import sharpness_gradient  # pylint: disable=import-outside-toplevel
    grad_s = sharpness_gradient.sharpness_gradient(inputs.objective.loss, inputs.params,
                                                   inputs.batch, inputs.top_vector)
    beta = optax.tree.vdot(grad_s, grad_s)
    return {"sharpness_gradient_norm": beta ** 0.5,
            "progressive_sharpening": -optax.tree.vdot(inputs.gradient, grad_s),
            "self_stabilization": beta}, state

  def line(self, record: Mapping[str, Any]) -> str:
    return (f" | ‖∇S‖ {record['sharpness_gradient_norm']:.4g}"
            f" | α {record['progressive_sharpening']:.4g}")

  def scalars(self, record: Mapping[str, Any]) -> dict[str, Any]:
    return {f"curvature/{key}": record[key] for key in self.record_keys}

  def panels(self, records: Sequence[Mapping[str, Any]], title: str) -> list[Panel]:
    steps = [r["step"] for r in records]
    return [Panel(f"{title}: progressive sharpening and self-stabilization", XLABEL,
                  "α = −∇L·∇S,  β = ||∇S||²", [
                      Series("α (progressive sharpening)", steps,
                             [r["progressive_sharpening"] for r in records], {"color": "tab:red"}),
                      Series("β (self-stabilization)", steps,
                             [r["self_stabilization"] for r in records],
                             {"color": "tab:green"})],
                  hlines=[HLine("_nolegend_", 0.0, {"color": "0.5", "linewidth": 0.8})])]


SELF_STABILIZATION = SelfStabilization()
