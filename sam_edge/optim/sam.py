"""The SAM variants, one entry each: its step, flags, state, stability edge and its formula, title.

With training loss L, parameters w and SAM radius ρ, on one batch (the same for every gradient),
g = ∇L(w) and ε_ρ(v) = ρ v/(‖v‖ + 1e-5), the base optimizer steps along d (`update.sam_update`):

    normalized    ε = ε_ρ(g) (the reference; the default),       d = ∇L(w + ε)
    unnormalized  ε = ρ g,                                        d = ∇L(w + ε)
    adaptive      ε = ρ T² g/‖T g‖, T = |w| + ξ (ASAM, Kwon et al. 2021; elementwise)
    fisher        ε = ρ f⁻¹⊙g/√(g·(f⁻¹⊙g)), f = 1 + η_f g⊙g (Fisher-SAM, Kim et al. 2022)
    gsam          d = g_p − α g_⊥, g_p = ∇L(w + ε_ρ(g)), g_⊥ = g − (g·ĝ_p) ĝ_p (Zhuang et al. 2022)
    looksam       every k-th step d = g_p and g_v ← g_p − (g_p·ĝ)ĝ; between,
                  d = g + α(‖g‖/‖g_v‖) g_v at the cost of one gradient (Liu et al. 2022)
    esam          ε = M⊙ε_ρ(g)/β, M_i ~ Bernoulli(β); d = the gradient at w + ε of the fraction γ of
                  the batch whose loss rose most (Du et al. 2022)
    friendly      m ← λ m + (1−λ) g, ε = ε_ρ(g − σ m) (Li et al. 2024)
    random        δ ~ N(0, σ²I), ε = δ + ε_λρ(∇L(w + δ)) (Liu et al. 2022)

the perturbations in `perturbations`, the other steps in `sam_steps`. A zero gradient gives a
zero perturbation, never NaN. ρ = 0 is the base optimizer alone for every variant (decided at
trace time: one gradient, the variant's state left as it is); for ESAM and Random-SAM that is a
convention, their formulas at ρ = 0 would still take a subset or a random point.
`--sam_params=normalization` (SAM-ON, Mueller et al. 2023) restricts ε of every variant to the
normalisation layers' scales and offsets.
m-sharpness (`group_size` = m) applies to the variants without state or random draws: each group
of m examples takes its step at its own perturbation (`update.sam_gradients`).

Edges (derived on L = ½ wᵀ H w, with E the base optimizer's edge less the L2 weight decay):
  * normalized, with plain descent: in the step from w with g = ||∇L(w)|| the eigen-component of
    curvature a is multiplied by 1 − η a (1 + ρ a / g), so the edge is the λ with
    λ (1 + (ρ/g) λ) = E: the SAM-edge (4/η)/(sqrt(1 + 8ρ/(η g)) + 1) when wd = 0. With momentum,
    Nesterov or Adam g changes along the recurrence: no closed form (None).
  * unnormalized, with a linear base method (GD, heavy ball, Nesterov): g_SAM = (H + ρH²) w, so
    the method runs on the curvatures a (1 + ρ a), and the edge is the λ with λ (1 + ρλ) = E.
  * every other variant, and SAM-ON: none known (None).

This module imports jax only inside functions, so defining the flags stays fast.
"""

import dataclasses
from typing import Any, Callable, Optional

from sam_edge import options
from sam_edge.optim import optimizers, perturbations, sam_options
from sam_edge.optim.sam_options import Hyper


@dataclasses.dataclass(frozen=True)
class SamVariant:
  """One SAM variant.

  `perturbation(params, grad, ρ, hyper)` is ε for the variants given by it alone; `step`
  (`sam_steps.Step` -> `oracle.Gradients`) the whole step of the others. `init(params)` is the
  variant's first state ({}: none), kept in the training state and checkpointed. `edge(base, E,
  η, ρ, ||g||, wd)` is the edge of the variant on the base optimizer `base` (an
  `optimizers.Optimizer`) whose own edge, less wd, is E (None where none is known);
  `edge_formula(base, formula)` names it from the base edge's formula (None likewise); `title`
  names the variant in figure titles. `groups`: m-sharpness applies; `accumulates`: the step is
  defined over micro-batches; `problems(settings)`: its cross-flag problems, one line each.
  """
  name: str
  formula: str
  options: tuple[options.Option, ...]
  title: str
  perturbation: Optional[Callable[[Any, Any, Any, Hyper], Any]] = None
  step: Optional[Callable[[Any], Any]] = None
  init: Callable[[Any], Any] = lambda params: {}
  edge: Callable[..., Any] = lambda *args: None
  edge_formula: Callable[[optimizers.Optimizer, str], Optional[str]] = lambda base, f: None
  groups: bool = False
  accumulates: bool = True
  problems: Callable[[Any], list[str]] = lambda settings: []


def _thresholds():
  from sam_edge.optim import thresholds  # pylint: disable=import-outside-toplevel  (module doc)
  return thresholds


def _steps(name: str) -> Callable[..., Any]:
  """`sam_steps.<name>`, imported when first called (module doc)."""
  def call(*args: Any) -> Any:
    from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel
    return getattr(sam_steps, name)(*args)
  return call


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
    SamVariant("normalized", "ε = ρg/(‖g‖+1e-5), the reference", (), "SAM",
               perturbation=perturbations.normalized, edge=normalized_edge,
               edge_formula=lambda base, f: "SAM-edge" if base.memoryless else None, groups=True),
    SamVariant("unnormalized", "ε = ρg", (), "unnormalized SAM",
               perturbation=perturbations.unnormalized, edge=unnormalized_edge,
               edge_formula=lambda base, f: (("unnormalized SAM-edge"
                                              + ("" if f == "2/η" else f" of {f}"))
                                             if base.linear else None), groups=True),
    SamVariant("adaptive", "ASAM: ε = ρT²g/‖Tg‖, T = |w| + --asam_xi", (sam_options.ASAM_XI,),
               "ASAM", perturbation=perturbations.adaptive, groups=True),
    SamVariant("fisher", "Fisher-SAM: ε = ρf⁻¹⊙g/√(g·f⁻¹⊙g), f = 1 + --fisher_eta·g⊙g",
               (sam_options.FISHER_ETA,), "Fisher-SAM", perturbation=perturbations.fisher,
               groups=True),
    SamVariant("gsam", "GSAM: d = g_p − --gsam_alpha·g_⊥, g_p = ∇L(w + ρg/‖g‖), g_⊥ = g − "
               "(g·ĝ_p)ĝ_p", (sam_options.GSAM_ALPHA, sam_options.GSAM_RHO_SCHEDULE), "GSAM",
               step=_steps("gsam"), groups=True, problems=sam_options.gsam_problems),
    SamVariant("looksam", "LookSAM: every --looksam_every steps d = g_p, g_v = g_p − (g_p·ĝ)ĝ; "
               "between, d = g + --looksam_alpha·(‖g‖/‖g_v‖)g_v",
               (sam_options.LOOKSAM_EVERY, sam_options.LOOKSAM_ALPHA), "LookSAM",
               step=_steps("looksam"), init=_steps("looksam_init")),
    SamVariant("esam", "ESAM: ε = M⊙ρg/(β‖g‖), M ~ Bernoulli(β = --esam_weight_fraction); d on "
               "the --esam_example_fraction of examples whose loss rose most",
               (sam_options.ESAM_WEIGHT_FRACTION, sam_options.ESAM_EXAMPLE_FRACTION), "ESAM",
               step=_steps("esam"), accumulates=False),
    SamVariant("friendly", "Friendly-SAM: m = λm + (1−λ)g, ε = ρ(g − σm)/‖g − σm‖, σ = "
               "--friendly_sigma, λ = --friendly_lambda",
               (sam_options.FRIENDLY_SIGMA, sam_options.FRIENDLY_LAMBDA), "Friendly-SAM",
               step=_steps("friendly"), init=_steps("friendly_init")),
    SamVariant("random", "Random-SAM: δ ~ N(0, σ²I), ε = δ + λρ∇L(w+δ)/‖∇L(w+δ)‖, σ = "
               "--random_sam_sigma, λ = --random_sam_lambda",
               (sam_options.RANDOM_SAM_SIGMA, sam_options.RANDOM_SAM_LAMBDA), "Random-SAM",
               step=_steps("random_sam")),
)}


def all_options() -> list[options.Option]:
  """Every variant's options, each once."""
  return options.unique([o for v in SAM_VARIANTS.values() for o in v.options])


def help_text() -> str:
  """The --sam help: each variant's formula."""
  return "SAM variant (g = ∇L(w), d = what the base optimizer sees): " + "; ".join(
      f"{v.name} ({v.formula})" for v in SAM_VARIANTS.values()) + "."


@dataclasses.dataclass(frozen=True)
class SamSettings:
  """The SAM options; all static (decided at trace time). Bad values are a ValueError whose
  message names the flags, one problem per `; `-separated part.

  rho:           radius ρ ≥ 0 (a Python float; 0 is the base optimizer, one gradient per step)
  kind:          the variant's name (module doc)
  group_size:    m of m-sharpness; None (or m = B) takes the whole batch as one group
  hyper:         the variant's own flag values ({flag: value} or pairs; defaults filled in)
  perturbed:     "all" parameters, or only the "normalization" layers' (SAM-ON, --sam_params)
  micro_batches: k of --accumulate_batches (`oracle`): every gradient a sum over k micro-batches
  schedule:      the step-size schedule (`optimizers.OptimizerSettings`) a ρ can follow (GSAM)
  phase:         LookSAM's kind of step fixed at trace time: True a SAM step, False a reuse
                 step, None (default) chosen on the device by t mod k (`host_period`)
  """
  rho: float = 0.0
  kind: str = "normalized"
  group_size: Optional[int] = None
  hyper: Any = ()
  perturbed: str = "all"
  micro_batches: int = 1
  schedule: Optional[optimizers.OptimizerSettings] = None
  phase: Optional[bool] = None

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
    if self.phase not in (None, True, False):
      raise ValueError(f"phase must be None, True or False, got {self.phase!r}")
    bad = sam_options.problems(self)
    if bad:
      raise ValueError("; ".join(bad))

  @property
  def variant(self) -> SamVariant:
    return SAM_VARIANTS[self.kind]

  @property
  def values(self) -> dict[str, Any]:
    return dict(self.hyper)

  def host_period(self) -> Optional[int]:
    """k when LookSAM's two kinds of step are compiled apart and chosen on the host (step t is
    a SAM step iff t mod k = 0): LookSAM with ρ > 0 and k > 1; else None."""
    if self.kind != "looksam" or self.rho == 0 or self.phase is not None:
      return None
    every = self.values["looksam_every"]
    return every if every > 1 else None

  def perturbation(self, params: Any, grad: Any) -> Any:
    """ε at w = `params` with g = `grad`, for the variants given by their perturbation."""
    return self.variant.perturbation(params, grad, self.rho, self.values)

  def title(self) -> str:
    """"SAM ρ=0.1", "unnormalized SAM ρ=0.05 m=32", "GSAM ρ=0.1 SAM-ON", or "" when ρ = 0."""
    if self.rho == 0:
      return ""
    words = f"{self.variant.title} ρ={self.rho:g}"
    words += f" m={self.group_size}" if self.group_size else ""
    return words + (" SAM-ON" if self.perturbed == "normalization" else "")
