"""The SAM variants' registry and their settings.

With training loss L, parameters w and SAM radius ρ, on one batch (the same for every gradient),
g = ∇L(w), the base optimizer steps along the direction d of the variant --sam names
(`update.sam_update`): normalized (the reference; the default), unnormalized, adaptive (ASAM),
fisher (Fisher-SAM), gsam, looksam, esam, friendly (Friendly-SAM), random (Random-SAM) and msam
(Momentum-SAM), each one module of `variants/` (the interface: `variant`) whose docstring states
its formula (its first paragraph is the variant's part of --sam's help, `help_text`), and one line
of `SAM_VARIANTS` here. A zero
gradient gives a zero perturbation, never NaN. ρ = 0 is the base optimizer alone for every variant
(decided at trace time: one gradient, the variant's state left as it is); for ESAM and Random-SAM
that is a convention, their formulas at ρ = 0 would still take a subset or a random point.
`--sam_params=normalization` (SAM-ON, Mueller et al. 2023) restricts ε of every variant to the
normalisation layers' scales and offsets.
m-sharpness (`group_size` = m) applies to the variants without state or random draws: each group
of m examples takes its step at its own perturbation (`update.sam_gradients`).

Edges: normalized SAM's SAM-edge with plain descent and unnormalized SAM's with a linear base
method (derived in their modules); every other variant, and SAM-ON: none known (None).

This module imports jax only inside functions, so defining the flags stays fast.
"""

import dataclasses
import math
from typing import Any, Optional

from sam_edge import options
from sam_edge.optim import optimizers, sam_options
from sam_edge.optim.variant import Variant
from sam_edge.optim.variants import (
    adaptive,
    esam,
    fisher,
    friendly,
    gsam,
    looksam,
    msam,
    normalized,
    random_sam,
    unnormalized,
)

SAM_VARIANTS: dict[str, Variant] = {v.name: v for v in (
    normalized.VARIANT,
    unnormalized.VARIANT,
    adaptive.VARIANT,
    fisher.VARIANT,
    gsam.VARIANT,
    looksam.VARIANT,
    esam.VARIANT,
    friendly.VARIANT,
    random_sam.VARIANT,
    msam.VARIANT,
)}


def all_options() -> list[options.Option]:
  """Every variant's options, each once."""
  return options.unique([o for v in SAM_VARIANTS.values() for o in v.options])


def help_text() -> str:
  """The --sam help: each variant's formula."""
  return "SAM variant (g = ∇L(w), d = what the base optimizer sees): " + "; ".join(
      f"{v.name} ({v.formula.rstrip('.')})" for v in SAM_VARIANTS.values()) + "."


@dataclasses.dataclass(frozen=True)
class SamSettings:
  """The SAM options; all static (decided at trace time). `problems()` lists the bad values, one
  line each naming its flag; the step refuses settings with problems (`update`).

  rho:           radius ρ ≥ 0 (a Python float; 0 is the base optimizer, one gradient per step)
  kind:          the variant's name (module doc)
  group_size:    m of m-sharpness; None (or m = B) takes the whole batch as one group
  hyper:         the variant's own flag values ({flag: value} or pairs; defaults filled in)
  perturbed:     "all" parameters, or only the "normalization" layers' (SAM-ON, --sam_params)
  micro_batches: k of --accumulate_batches (`oracle`): every gradient a sum over k micro-batches
  step_sizes:    η_t and its extremes (`optimizers.StepSizes`, set by `method.Method.of`), for a
                 variant whose ρ can follow them (GSAM's --gsam_rho_schedule)
  phase:         for a variant compiled as two programs chosen on the host (`host_period`), the
                 one fixed at trace time (True: the one of steps t ≡ 0 mod k); None (default):
                 chosen on the device
  """
  rho: float = 0.0
  kind: str = "normalized"
  group_size: Optional[int] = None
  hyper: Any = ()
  perturbed: str = "all"
  micro_batches: int = 1
  step_sizes: Optional[optimizers.StepSizes] = None
  phase: Optional[bool] = None

  def __post_init__(self):
    if _number(self.rho):
      object.__setattr__(self, "rho", float(self.rho))
    if self.kind in SAM_VARIANTS:
      object.__setattr__(self, "hyper", options.settled(self.variant.options, self.hyper,
                                                        f"SAM variant {self.kind!r}", check=False))

  def problems(self) -> list[str]:
    """Every problem of these settings, one line each naming its flag ([] when sound)."""
    if self.kind not in SAM_VARIANTS:
      return [f"--sam={self.kind} is not a SAM variant: use one of {', '.join(SAM_VARIANTS)}"]
    p = [] if _number(self.rho) and math.isfinite(self.rho) and self.rho >= 0 else [
        f"--rho must be a finite number >= 0, got {self.rho}"]
    if self.group_size is not None and (not isinstance(self.group_size, int)
                                        or self.group_size < 1):
      p.append(f"--sam_group_size must be at least 1, got {self.group_size}")
    if self.phase not in (None, True, False):
      p.append(f"the SAM phase must be None, True or False, got {self.phase!r}")
    p += options.problems(self.variant.options, self.values.get)
    return p + ([] if p else sam_options.problems(self))

  @property
  def variant(self) -> Variant:
    """The variant's registry entry; ValueError for an unknown name."""
    if self.kind not in SAM_VARIANTS:
      raise ValueError(self.problems()[0])
    return SAM_VARIANTS[self.kind]

  @property
  def values(self) -> dict[str, Any]:
    return dict(self.hyper)

  def host_period(self) -> Optional[int]:
    """k when the variant's two programs are chosen on the host (step t takes phase True iff
    t mod k = 0; LookSAM with k > 1), for ρ > 0 and phase None; else None."""
    if self.rho == 0 or self.phase is not None:
      return None
    return self.variant.host_period(self)

  def title(self) -> str:
    """"SAM ρ=0.1", "unnormalized SAM ρ=0.05 m=32", "GSAM ρ=0.1 SAM-ON", or "" when ρ = 0."""
    if self.rho == 0:
      return ""
    words = f"{self.variant.title} ρ={self.rho:g}"
    words += f" m={self.group_size}" if self.group_size else ""
    return words + (" SAM-ON" if self.perturbed == "normalization" else "")


def _number(x: Any) -> bool:
  """Whether `x` is a Python int or float (not a bool)."""
  return isinstance(x, (int, float)) and not isinstance(x, bool)
