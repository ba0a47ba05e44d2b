"""The SAM variants, one entry each: perturbation, flags, stability edge and its formula, title.

With training loss L, parameters w and SAM radius ρ, on one batch (the same for both gradients):

    g      = ∇L(w)
    ε      = ρ g / (||g|| + 1e-5)             normalized   (the reference; the default)
           = ρ g                              unnormalized
           = ρ T² g / ||T g||,  T = |w| + ξ   adaptive     (ASAM, Kwon et al. 2021; elementwise)
    g_SAM  = ∇L(w + ε)

and the base optimizer steps along g_SAM (`update.sam_update`). A zero gradient gives a zero
perturbation, never NaN. m-sharpness (`group_size` = m) applies to every variant: each group of m
examples takes its gradient at its own perturbation (`update.sam_gradients`).

Edges (derived on L = ½ wᵀ H w, with E the base optimizer's edge less the L2 weight decay):
  * normalized, with plain descent: in the step from w with g = ||∇L(w)|| the eigen-component of
    curvature a is multiplied by 1 − η a (1 + ρ a / g), so the edge is the λ with
    λ (1 + (ρ/g) λ) = E: the SAM-edge (4/η)/(sqrt(1 + 8ρ/(η g)) + 1) when wd = 0. With momentum,
    Nesterov or Adam g changes along the recurrence: no closed form (None).
  * unnormalized, with a linear base method (GD, heavy ball, Nesterov): g_SAM = (H + ρH²) w, so
    the method runs on the curvatures a (1 + ρ a), and the edge is the λ with λ (1 + ρλ) = E.
  * adaptive: none known (None).

This module imports jax only inside the perturbations, so defining the flags stays fast.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional

from sam_edge import options
from sam_edge.optim import optimizers
from sam_edge.options import Option

Hyper = Mapping[str, Any]
SAM_NORM_EPS = 1e-5
ASAM_XI = Option("asam_xi", 0.01, "ξ of ASAM's T = |w| + ξ (Kwon et al.: 0.01).",
                 check=options.non_negative)


@dataclasses.dataclass(frozen=True)
class SamVariant:
  """One SAM variant.

  `perturbation(params, grad, ρ, hyper)` is ε; `edge(base, E, η, ρ, ||g||, wd)` the edge of the
  variant on the base optimizer `base` (an `optimizers.Optimizer`) whose own edge, less wd, is E
  (None where none is known); `edge_formula(base, formula)` names it from the base edge's
  formula (None likewise); `title` names the variant in figure titles.
  """
  name: str
  formula: str
  options: tuple[Option, ...]
  perturbation: Callable[[Any, Any, float, Hyper], Any]
  edge: Callable[..., Any]
  edge_formula: Callable[[optimizers.Optimizer, str], Optional[str]]
  title: str


def _thresholds():
  from sam_edge.optim import thresholds  # pylint: disable=import-outside-toplevel  (module doc)
  return thresholds


def normalized_perturbation(params: Any, grad: Any, rho: float, h: Hyper) -> Any:
  """ε = ρ g / (||g|| + 1e-5)."""
  import optax  # pylint: disable=import-outside-toplevel

  from sam_edge import trees  # pylint: disable=import-outside-toplevel
  direction, _ = trees.safe_normalize(grad, eps=SAM_NORM_EPS)
  return optax.tree.scale(rho, direction)


def unnormalized_perturbation(params: Any, grad: Any, rho: float, h: Hyper) -> Any:
  """ε = ρ g."""
  import optax  # pylint: disable=import-outside-toplevel
  return optax.tree.scale(rho, grad)


def adaptive_perturbation(params: Any, grad: Any, rho: float, h: Hyper) -> Any:
  """ε = ρ T² g / ||T g|| with T = |w| + ξ elementwise (0 when T g = 0)."""
  import jax  # pylint: disable=import-outside-toplevel

  from sam_edge import trees  # pylint: disable=import-outside-toplevel
  t = jax.tree.map(lambda w: abs(w) + h["asam_xi"], params)
  direction, _ = trees.safe_normalize(jax.tree.map(lambda a, b: a * b, t, grad))
  return jax.tree.map(lambda ti, d: rho * ti * d, t, direction)


def normalized_edge(base: optimizers.Optimizer, e: Any, eta: Any, rho: float, grad_norm: Any,
                    weight_decay: float) -> Any:
  """The SAM-edge (module doc); None unless the base method is plain descent."""
  if not base.memoryless:
    return None
  if grad_norm is None:
    raise ValueError("the SAM-edge of normalized SAM needs the gradient norm")
  thresholds = _thresholds()
  if weight_decay == 0:
    return thresholds.sam_edge(grad_norm, eta, rho)       # exactly the reference's SAM-edge
  return thresholds.scaled_curvature_edge(e, rho, grad_norm)


def unnormalized_edge(base: optimizers.Optimizer, e: Any, eta: Any, rho: float, grad_norm: Any,
                      weight_decay: float) -> Any:
  """The λ with λ(1 + ρλ) = E (module doc); None unless the base method is linear."""
  return _thresholds().sam_curvature_edge(e, rho) if base.linear else None


SAM_VARIANTS: dict[str, SamVariant] = {v.name: v for v in (
    SamVariant("normalized", "ρg/(‖g‖+1e-5), the reference", (), normalized_perturbation,
               normalized_edge, lambda base, f: "SAM-edge" if base.memoryless else None, "SAM"),
    SamVariant("unnormalized", "ρg", (), unnormalized_perturbation, unnormalized_edge,
               lambda base, f: (("unnormalized SAM-edge" + ("" if f == "2/η" else f" of {f}"))
                                if base.linear else None), "unnormalized SAM"),
    SamVariant("adaptive", "ASAM: ρT²g/‖Tg‖, T = |w| + --asam_xi", (ASAM_XI,),
               adaptive_perturbation, lambda *args: None, lambda base, f: None, "ASAM"),
)}


def all_options() -> list[Option]:
  """Every variant's options, each once."""
  return options.unique([o for v in SAM_VARIANTS.values() for o in v.options])


def help_text() -> str:
  """The --sam help: each variant's perturbation ε."""
  return "SAM perturbation ε: " + "; ".join(f"{v.name} ({v.formula})"
                                            for v in SAM_VARIANTS.values()) + "."


@dataclasses.dataclass(frozen=True)
class SamSettings:
  """The SAM options; all static (decided at trace time).

  rho:        radius ρ ≥ 0 (a Python float; 0 is the base optimizer, one gradient per step)
  kind:       the variant's name (module doc)
  group_size: m of m-sharpness; None (or m = B) takes the whole batch as one group
  hyper:      the variant's own flag values ({flag: value} or pairs; defaults filled in)
  """
  rho: float = 0.0
  kind: str = "normalized"
  group_size: Optional[int] = None
  hyper: Any = ()

  def __post_init__(self):
    if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or not self.rho >= 0:
      raise ValueError(f"rho must be a Python number >= 0, got {self.rho!r}")
    object.__setattr__(self, "rho", float(self.rho))
    if self.kind not in SAM_VARIANTS:
      raise ValueError(f"unknown SAM kind {self.kind!r}: expected one of "
                       f"{', '.join(SAM_VARIANTS)}")
    if self.group_size is not None and (not isinstance(self.group_size, int)
                                        or self.group_size < 1):
      raise ValueError(f"group_size must be a positive integer or None, got {self.group_size!r}")
    object.__setattr__(self, "hyper", options.settled(self.variant.options, self.hyper,
                                                      f"SAM variant {self.kind!r}"))

  @property
  def variant(self) -> SamVariant:
    return SAM_VARIANTS[self.kind]

  @property
  def values(self) -> dict[str, Any]:
    return dict(self.hyper)

  def perturbation(self, params: Any, grad: Any) -> Any:
    """ε at w = `params` with g = `grad`."""
    return self.variant.perturbation(params, grad, self.rho, self.values)

  def title(self) -> str:
    """"SAM ρ=0.1", "unnormalized SAM ρ=0.05 m=32", or "" when ρ = 0."""
    if self.rho == 0:
      return ""
    words = f"{self.variant.title} ρ={self.rho:g}"
    return words + (f" m={self.group_size}" if self.group_size else "")
