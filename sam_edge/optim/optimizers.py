"""The base optimizers, one entry each: constructor, stability edge, edge formula, title, flags.

The base optimizer sees the direction d that the SAM variant hands it (∇L when ρ = 0), plus the L2
term when `weight_decay` = wd > 0 (then clipped with --clip_grad_norm; with --weight_decay_in_loss
the L2 term is in the loss instead: `regularization`):

    sgd       w ← w − η d                                   optax.sgd(η)       (the reference)
    momentum  m ← d + β m,  w ← w − η m                     optax.sgd(η, momentum=β)
    nesterov  m ← d + β m,  w ← w − η (d + β m)             optax.sgd(η, momentum=β, nesterov=True)
    adam      μ ← β1 μ + (1−β1) d,  ν ← β2 ν + (1−β2) d²,  t ← t + 1,
              w ← w − η (μ/(1−β1^t)) / (sqrt(ν/(1−β2^t)) + eps)      optax.adam(η, β1, β2, eps)

    with weight decay:  d ← d + wd·M⊙w  (optax.add_decayed_weights before the base transform;
                        M the decay mask of --no_weight_decay_on_norm, 1 without it)
    with a clip c:      d ← d·min(1, c/‖d‖)  (optax.clip_by_global_norm, after the decay)

Weight decay is therefore **L2 regularisation** (the gradient of ½ wd ||w||² added to what the
base optimizer sees, so Adam rescales it too), not decoupled (AdamW) decay. η may be a float or
an optax schedule (count -> η).

Edges. On the quadratic L = ½ wᵀ H w a method is stable iff it is stable on each eigen-direction
L = ½ a w² (curvature a, h = η a); its edge is the largest a for which it is. For a second-order
recurrence with characteristic polynomial x² + c1 x + c0 both roots lie strictly inside the unit
circle iff (Jury) (J1) 1 + c1 + c0 > 0, (J2) 1 − c1 + c0 > 0, (J3) |c0| < 1. Each entry's edge
function derives its threshold so; the functions are plain arithmetic, valid on floats and on
traced jax scalars alike. Adding an optimizer is one entry here plus its tests.

This module imports optax only inside the constructors, so defining the flags stays fast.
"""

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional

from sam_edge import options
from sam_edge.optim import training_options
from sam_edge.options import Option

Hyper = Mapping[str, Any]      # the optimizer's own flag values by name


class StepSizes(NamedTuple):
  """The step-size schedule alone (`schedules`; the plateau schedule's scale aside), a value: what
  a SAM variant whose ρ follows η_t sees (GSAM's ρ_t). `learning_rate()` is η for a constant
  schedule without warm-up, else the schedule s -> η(s) (`schedules.step_size_at` reads either);
  `extremes()` is (η_min, η_max) over all steps."""
  kind: str
  step_size: float
  warmup_steps: int
  total_steps: Optional[int]
  boundaries: tuple[float, ...]
  factor: float

  def learning_rate(self) -> Any:
    if self.kind == "constant" and self.warmup_steps == 0:
      return self.step_size
    from sam_edge.optim import schedules  # pylint: disable=import-outside-toplevel
    return schedules.make_schedule(self.kind, self.step_size, warmup_steps=self.warmup_steps,
                                   total_steps=self.total_steps, boundaries=self.boundaries,
                                   factor=self.factor)

  def extremes(self) -> tuple[float, float]:
    from sam_edge.optim import schedules  # pylint: disable=import-outside-toplevel
    return schedules.extremes(self.kind, self.step_size, warmup_steps=self.warmup_steps,
                              total_steps=self.total_steps, boundaries=self.boundaries,
                              factor=self.factor)

MOMENTUM = Option("momentum", 0.9, "β of --optimizer=momentum|nesterov, any value in (-1, 1).",
                  check=options.interval(-1, 1, low_open=True))
ADAM_B1 = Option("adam_b1", 0.9, "Adam's β1 (optax's default), any value in (-1, 1).",
                 check=options.interval(-1, 1, low_open=True))
ADAM_B2 = Option("adam_b2", 0.999, "Adam's β2 (optax's default).", check=options.interval(0, 1))
ADAM_EPS = Option("adam_eps", 1e-8, "Adam's ε (optax's default).", check=options.positive)
NESTEROV_BREAK = -1.0 / 3.0


def _optax():
  import optax  # pylint: disable=import-outside-toplevel  (see the module doc)
  return optax


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """One base optimizer.

  `make(hyper, η)` builds the optax transformation; `edge(hyper, η)` is the largest stable
  curvature of the measured operator (None: no closed form); `edge_formula(hyper)` names it for
  plots; `title(hyper)` says the method in a few words ("" for plain descent). `linear`: the
  update is a fixed linear recurrence in the gradient, so SAM's curvature edges compose with it;
  `memoryless`: the step depends on the current gradient only (plain descent).
  `preconditioner(opt_state, d, hyper)`: the diagonal P of an adaptive method, whose
  preconditioned Hessian P^{-1/2} H P^{-1/2} the measurements take.
  """
  name: str
  update: str
  options: tuple[Option, ...]
  make: Callable[[Hyper, Any], Any]
  edge: Optional[Callable[[Hyper, Any], Any]]
  edge_formula: Callable[[Hyper], str]
  title: Callable[[Hyper], str]
  linear: bool = False
  memoryless: bool = False
  preconditioner: Optional[Callable[[Any, Any, Hyper], Any]] = None


def heavy_ball_edge(h: Hyper, eta: Any) -> Any:
  """(2 + 2β)/η: heavy ball, optax.sgd(η, momentum=β): m ← g + β m, w ← w − η m.

  On L = ½ a w², η m_{t−1} = w_{t−1} − w_t, so w_{t+1} = (1 + β − h) w_t − β w_{t−1}, with
  characteristic polynomial x² − (1 + β − h) x + β. Jury: (J1) h > 0; (J3) |β| < 1, true for
  every β in (−1, 1), negative included; (J2) 2 + 2β − h > 0. So a < (2 + 2β)/η, which is 2/η
  at β = 0.
  """
  return (2.0 + 2.0 * h["momentum"]) / eta


def nesterov_edge(h: Hyper, eta: Any) -> Any:
  """Nesterov, optax.sgd(η, momentum=β, nesterov=True): m ← g + β m, w ← w − η (g + β m).

      (2 + 2β) / (η (1 + 2β))    for β ≥ −1/3,
      (1 + 1/|β|) / η            for β < −1/3.

  On L = ½ a w², with M(z) = a W(z) / (1 − β z⁻¹) the update gives
  (z − 1 + h) W = −η β M = −h β z W / (z − β), so the characteristic polynomial is
  (z − 1 + h)(z − β) + h β z = x² − (1 + β)(1 − h) x + β (1 − h). Jury:
    (J1) 1 − (1 + β)(1 − h) + β(1 − h) = h > 0;
    (J2) 1 + (1 + 2β)(1 − h) > 0: for β > −1/2 this is h < 1 + 1/(1 + 2β) = (2 + 2β)/(1 + 2β);
         for β ≤ −1/2 it bounds h only from below by 1 − 1/|1 + 2β| ≤ 0 (no constraint);
    (J3) |β| |1 − h| < 1: h < 1 + 1/|β| (and h > 1 − 1/|β|, below 0 for |β| < 1).
  For β > −1/2 the binding upper bound is the smaller of 1/(1 + 2β) and 1/|β|: it is (J2) when
  1 + 2β ≥ |β|, i.e. β ≥ −1/3, and (J3) when β < −1/3 (the two agree, h = 4, at β = −1/3). For
  β ≤ −1/2 only (J3) binds. At β = 0 both give 2/η; at β = −1/2 the edge is 3/η.
  """
  beta = h["momentum"]
  if beta >= NESTEROV_BREAK:
    return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * eta)
  return (1.0 + 1.0 / abs(beta)) / eta


def adam_edge(h: Hyper, eta: Any) -> Any:
  """2(1 + β1)/((1 − β1) η), the edge of the *preconditioned* sharpness λ1(P^{-1/2} H P^{-1/2}).

  Adam with a frozen preconditioner P (Cohen et al.; bias corrections ≈ 1 late in training):
  m ← β1 m + (1 − β1) g, w ← w − η P⁻¹ m. With u = P^{1/2} w and m' = P^{-1/2} m / (1 − β1),
  on L = ½ wᵀ H w: m' ← β1 m' + Ã u and u ← u − η(1 − β1) m', with Ã = P^{-1/2} H P^{-1/2}. That
  is heavy ball with momentum β1 and step η(1 − β1) on Ã, whose edge (2 + 2β1)/(η(1 − β1)) is
  derived in `heavy_ball_edge`. 38/η at β1 = 0.9.
  """
  b1 = h["adam_b1"]
  return 2.0 * (1.0 + b1) / ((1.0 - b1) * eta)


def _adam_preconditioner(opt_state: Any, grad_seen: Any, h: Hyper) -> Any:
  from sam_edge.optim import adam  # pylint: disable=import-outside-toplevel
  return adam.preconditioner_from_state(opt_state, grad_seen, h["adam_b2"], h["adam_eps"])


OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("sgd", "w ← w − ηd (the reference: exactly optax.sgd(η))", (),
              make=lambda h, lr: _optax().sgd(lr), edge=lambda h, eta: 2.0 / eta,
              edge_formula=lambda h: "2/η", title=lambda h: "", linear=True, memoryless=True),
    Optimizer("momentum", "heavy ball: m ← d + βm, w ← w − ηm", (MOMENTUM,),
              make=lambda h, lr: _optax().sgd(lr, momentum=h["momentum"]), edge=heavy_ball_edge,
              edge_formula=lambda h: f"(2+2β)/η, β={h['momentum']:g}",
              title=lambda h: f"momentum β={h['momentum']:g}", linear=True),
    Optimizer("nesterov", "m ← d + βm, w ← w − η(d + βm)", (MOMENTUM,),
              make=lambda h, lr: _optax().sgd(lr, momentum=h["momentum"], nesterov=True),
              edge=nesterov_edge,
              edge_formula=lambda h: ("(2+2β)/(η(1+2β))" if h["momentum"] >= NESTEROV_BREAK
                                      else "(1+1/|β|)/η") + f", β={h['momentum']:g}",
              title=lambda h: f"Nesterov β={h['momentum']:g}", linear=True),
    Optimizer("adam", "optax.adam(η, β1, β2, ε)", (ADAM_B1, ADAM_B2, ADAM_EPS),
              make=lambda h, lr: _optax().adam(lr, b1=h["adam_b1"], b2=h["adam_b2"],
                                               eps=h["adam_eps"]),
              edge=adam_edge, edge_formula=lambda h: f"2(1+β1)/((1−β1)η), β1={h['adam_b1']:g}",
              title=lambda h: "Adam", preconditioner=_adam_preconditioner),
)}


def all_options() -> list[Option]:
  """Every optimizer's options, each once."""
  return options.unique([o for entry in OPTIMIZERS.values() for o in entry.options])


def help_text() -> str:
  """The --optimizer help: each optimizer and its update."""
  return ("Base optimizer (optax), fed the SAM variant's direction d: "
          + "; ".join(f"{o.name} ({o.update})" for o in OPTIMIZERS.values()) + ".")


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """The base optimizer, its own flag values (`hyper`, defaults filled in), L2 weight decay (its
  form and mask: `decay_in_loss`, `exempt_norm`), the clip of its direction and the step-size
  schedule (all static); `problems()` lists the values outside their flags' ranges.

  `learning_rate()` is the float η for a constant schedule without warm-up, so that `sgd` is
  exactly the reference's `optax.sgd(η)`; otherwise the optax schedule of `schedules`. The
  schedule `plateau` is the constant one times a scale the run sets between steps (`plateau`);
  `step_size_now(opt_state, step)` is the step size η_t of the update at `step`, scale included.
  """
  name: str = "sgd"
  step_size: float = 0.01
  hyper: Any = ()                  # {flag: value} or pairs; stored as sorted pairs
  weight_decay: float = 0.0
  schedule: str = "constant"
  warmup_steps: int = 0
  total_steps: Optional[int] = None
  boundaries: tuple[float, ...] = (0.5, 0.75)
  factor: float = 0.1
  decay_in_loss: bool = False       # --weight_decay_in_loss: L2 in the loss (`regularization`)
  exempt_norm: bool = False         # --no_weight_decay_on_norm: no decay on norms and biases
  clip: Optional[float] = None      # --clip_grad_norm: the global norm of what the base sees

  def __post_init__(self):
    if self.name in OPTIMIZERS:
      object.__setattr__(self, "hyper", options.settled(OPTIMIZERS[self.name].options,
                                                        self.hyper, f"optimizer {self.name!r}",
                                                        check=False))

  def problems(self) -> list[str]:
    """Every value outside its flag's range, one line each ([] when sound); `make` refuses
    settings with problems."""
    if self.name not in OPTIMIZERS:
      return [f"--optimizer={self.name} is not an optimizer: use one of {', '.join(OPTIMIZERS)}"]
    values = {**self.values, "weight_decay": self.weight_decay, "clip_grad_norm": self.clip}
    return (options.problems((*self.entry.options, WEIGHT_DECAY, training_options.CLIP_GRAD_NORM),
                             values.get)
            + training_options.decay_problems(self.weight_decay, self.decay_in_loss,
                                              self.exempt_norm))

  def step_sizes(self) -> StepSizes:
    """The step-size schedule alone (`StepSizes`)."""
    kind = "constant" if self.schedule == PLATEAU else self.schedule
    return StepSizes(kind, self.step_size, self.warmup_steps, self.total_steps,
                     tuple(self.boundaries), self.factor)

  @property
  def entry(self) -> Optimizer:
    """The optimizer's table entry; ValueError for an unknown name."""
    if self.name not in OPTIMIZERS:
      raise ValueError(self.problems()[0])
    return OPTIMIZERS[self.name]

  @property
  def values(self) -> dict[str, Any]:
    """The optimizer's own flag values by name."""
    return dict(self.hyper)

  def learning_rate(self) -> Any:
    return self.step_sizes().learning_rate()

  @property
  def optimizer_decay(self) -> float:
    """The decay the optimizer adds to its direction: wd, or 0 when it is in the loss."""
    return 0.0 if self.decay_in_loss else self.weight_decay

  def _before_base(self) -> list:
    from sam_edge.optim import regularization  # pylint: disable=import-outside-toplevel
    return regularization.before_base(self.optimizer_decay, self.exempt_norm, self.clip)

  def make(self) -> Any:
    """The optax transformation: chain(add_decayed_weights(wd, mask), clip_by_global_norm(c),
    base) with the steps that apply, else the base optimizer alone (so that its state is the
    base optimizer's, as before these steps existed); ValueError for settings with problems."""
    options.refuse(self.problems())
    base = self.entry.make(self.values, self.learning_rate())
    steps = self._before_base()
    if self.schedule == PLATEAU:
      from sam_edge.optim import plateau  # pylint: disable=import-outside-toplevel
      return _optax().chain(*steps, base, plateau.scale_by_plateau())
    return _optax().chain(*steps, base) if steps else base

  def step_size_now(self, opt_state: Any, step: Any) -> Any:
    """η_t of the update at `step` (0-based) from the optimizer state `opt_state`: the schedule's
    η(step), times the plateau scale for `--lr_schedule=plateau`."""
    from sam_edge.optim import plateau, schedules  # pylint: disable=import-outside-toplevel
    eta = schedules.step_size_at(self.learning_rate(), step)
    return eta * plateau.scale_of(opt_state) if self.schedule == PLATEAU else eta

  def seen(self, direction: Any, params: Any) -> Any:
    """What the base transform receives for `direction` at `params`: c(d + wd·M⊙w)."""
    from sam_edge.optim import regularization  # pylint: disable=import-outside-toplevel
    return regularization.seen(self._before_base(), direction, params)

  def penalty(self) -> Optional[Callable[[Any], Any]]:
    """R(w) = (wd/2)‖M⊙w‖² when the decay is in the loss, else None."""
    if not (self.decay_in_loss and self.weight_decay):
      return None
    from sam_edge.optim import regularization  # pylint: disable=import-outside-toplevel
    return lambda params: regularization.penalty(params, self.weight_decay, self.exempt_norm)

  def title(self) -> str:
    return self.entry.title(self.values)


PLATEAU = "plateau"
WEIGHT_DECAY = Option("weight_decay", 0.0, "L2 weight decay wd: wd·w is added to the gradient the "
                      "base optimizer sees (coupled L2, not decoupled AdamW-style decay); SAM's "
                      "perturbation uses the loss gradient alone (--weight_decay_in_loss puts "
                      "(wd/2)‖w‖² in the loss instead).", check=options.non_negative)
