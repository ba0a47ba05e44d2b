"""The training method as one object: the base optimizer and the SAM variant, built once.

The training step, the measurements (the method's edge, batch sharpness, tracking) and the
outputs (titles, edge labels) all read the same `Method`. A variant whose ρ follows the step size
(GSAM's ρ_t) receives the schedule as `StepSizes`: η_t and its extremes, not the optimizer.

    method = Method.of(OptimizerSettings("momentum", 0.1), SamSettings(0.05))
    method.problems()      # every problem, one line each naming its flag ([] when sound)
    method.title()         # "momentum β=0.9 + SAM ρ=0.05"

No jax here.
"""

import dataclasses

from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings


@dataclasses.dataclass(frozen=True)
class Method:
  """The base optimizer (its schedule, decay and clip) and the SAM variant (ρ = 0: none)."""
  optimizer: OptimizerSettings = OptimizerSettings()
  sam: SamSettings = SamSettings()

  @classmethod
  def of(cls, optimizer: OptimizerSettings, sam: SamSettings) -> "Method":
    """The method; its variant gets the optimizer's step sizes (`OptimizerSettings.step_sizes`)."""
    return cls(optimizer, dataclasses.replace(sam, step_sizes=optimizer.step_sizes()))

  def problems(self) -> list[str]:
    """Every problem of the optimizer's and the variant's settings, one line each."""
    return self.optimizer.problems() + self.sam.problems()

  def title(self) -> str:
    """The optimizer's and the variant's titles, e.g. "momentum β=0.9 + SAM ρ=0.05" ("" for
    plain SGD without SAM)."""
    return " + ".join(w for w in (self.optimizer.title(), self.sam.title()) if w)
