"""Base optimizers from optax, and Adam's diagonal preconditioner.

The base optimizer sees the gradient d that SAM hands it (g_SAM, or ∇L when ρ = 0), plus the L2
term when `weight_decay` = wd > 0:

    sgd       w ← w − η d                                   optax.sgd(η)       (the reference)
    momentum  m ← d + β m,  w ← w − η m                     optax.sgd(η, momentum=β)
    nesterov  m ← d + β m,  w ← w − η (d + β m)             optax.sgd(η, momentum=β, nesterov=True)
    adam      μ ← β1 μ + (1−β1) d,  ν ← β2 ν + (1−β2) d²,  t ← t + 1,
              w ← w − η (μ/(1−β1^t)) / (sqrt(ν/(1−β2^t)) + eps)      optax.adam(η, β1, β2, eps)

    with weight decay:  d ← d + wd·w  (optax.add_decayed_weights before the base transform)

Weight decay is therefore **L2 regularisation** (the gradient of ½ wd ||w||² added to what the
base optimizer sees, so Adam rescales it too), not decoupled (AdamW) decay. SAM's perturbation
uses the loss gradient only. η may be a float or an optax schedule (count -> η).

Adam's preconditioner (Cohen et al., "Adaptive gradient methods at the edge of stability"): the
next Adam step from state (μ, ν, t) with incoming gradient d moves w by −η m̂ / P with

    P = sqrt(ν̂) + eps,   ν̂ = (β2 ν + (1 − β2) d²) / (1 − β2^(t+1)),

and the *preconditioned sharpness* is the top eigenvalue of P^{-1/2} H P^{-1/2}.
"""

import dataclasses
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax

from sam_edge import schedules

PyTree = Any
LearningRate = Union[float, optax.Schedule]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def make_base_optimizer(name: str, learning_rate: LearningRate, *, momentum: float = 0.9,
                        adam_b1: float = 0.9, adam_b2: float = 0.999, adam_eps: float = 1e-8,
                        weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The base optimizer `name` (see module doc), built from optax.

  `sgd` is exactly `optax.sgd(η)`; `momentum` with β = 0 computes d + 0·m = d, bitwise sgd's
  update. Momentum β may be any value in (−1, 1), negative included. Weight decay is L2:
  `optax.chain(optax.add_decayed_weights(wd), base)` when wd > 0 (the base optimizer alone when
  wd = 0, so the state is the base optimizer's). Raises ValueError on an unknown name or
  settings outside their ranges.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
  if name in ("momentum", "nesterov") and not -1.0 < momentum < 1.0:
    raise ValueError(f"momentum must lie in (-1, 1), got {momentum}")
  if name == "adam":
    if not -1.0 < adam_b1 < 1.0 or not 0.0 <= adam_b2 < 1.0 or adam_eps < 0:
      raise ValueError(f"adam needs b1 in (-1, 1), b2 in [0, 1) and eps >= 0; got "
                       f"b1={adam_b1}, b2={adam_b2}, eps={adam_eps}")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
  if name == "sgd":
    base = optax.sgd(learning_rate)
  elif name == "momentum":
    base = optax.sgd(learning_rate, momentum=momentum)
  elif name == "nesterov":
    base = optax.sgd(learning_rate, momentum=momentum, nesterov=True)
  else:
    base = optax.adam(learning_rate, b1=adam_b1, b2=adam_b2, eps=adam_eps)
  if weight_decay == 0:
    return base
  return optax.chain(optax.add_decayed_weights(weight_decay), base)


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """The base optimizer and its step-size schedule (all static).

  `learning_rate()` is the float η for a constant schedule without warm-up, so that `sgd` is
  exactly the reference's `optax.sgd(η)`; otherwise the optax schedule of `schedules`.
  """
  name: str = "sgd"
  step_size: float = 0.01
  momentum: float = 0.9
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  weight_decay: float = 0.0
  schedule: str = "constant"
  warmup_steps: int = 0
  total_steps: Optional[int] = None
  boundaries: tuple[float, ...] = (0.5, 0.75)
  factor: float = 0.1

  def learning_rate(self) -> LearningRate:
    if self.schedule == "constant" and self.warmup_steps == 0:
      return self.step_size
    return schedules.make_schedule(self.schedule, self.step_size, warmup_steps=self.warmup_steps,
                                   total_steps=self.total_steps, boundaries=self.boundaries,
                                   factor=self.factor)

  def make(self) -> optax.GradientTransformation:
    return make_base_optimizer(self.name, self.learning_rate(), momentum=self.momentum,
                               adam_b1=self.adam_b1, adam_b2=self.adam_b2,
                               adam_eps=self.adam_eps, weight_decay=self.weight_decay)


def step_size_at(learning_rate: LearningRate, step: jax.Array) -> jax.Array:
  """η of the update taken at `step` (0-based): `learning_rate(step)` for a schedule, else η.

  optax's `scale_by_schedule` evaluates the schedule at its own count, the number of updates
  already applied, which equals the TrainState step of a run started from `init_state`.
  """
  if callable(learning_rate):
    return jnp.asarray(learning_rate(step))
  return jnp.asarray(learning_rate)


def find_adam_state(opt_state: PyTree) -> optax.ScaleByAdamState:
  """The one `optax.ScaleByAdamState` (count, mu, nu) inside an optax state (e.g. in a chain).

  Raises ValueError if there is none or more than one.
  """
  found = [x for x in jax.tree.leaves(opt_state,
                                      is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
           if isinstance(x, optax.ScaleByAdamState)]
  if len(found) != 1:
    raise ValueError(f"expected one optax.ScaleByAdamState in the optimizer state, found "
                     f"{len(found)}")
  return found[0]


def adam_preconditioner(nu: PyTree, count: jax.Array, grad_seen: PyTree, b2: float,
                        eps: float) -> PyTree:
  """P = sqrt(ν̂) + eps with ν̂ = (b2·ν + (1 − b2)·d²) / (1 − b2^(count+1)), elementwise.

  The diagonal preconditioner the *next* Adam step from this state applies (its update is
  −η m̂ / P), where d = `grad_seen` is the gradient Adam will receive (the SAM gradient, plus
  wd·w with weight decay) and `count` the number of Adam steps taken so far. Well defined at
  count = 0 (ν = 0 gives P = |d| + eps). A params-shaped pytree.
  """
  correction = 1 - b2 ** (jnp.asarray(count, jnp.int32) + 1)     # as optax's bias correction

  def leaf(v, d):
    nu_hat = (b2 * v + (1.0 - b2) * jnp.square(d)) / correction.astype(v.dtype)
    return jnp.sqrt(nu_hat) + eps
  return jax.tree.map(leaf, nu, grad_seen)


def adam_preconditioner_from_state(opt_state: PyTree, grad_seen: PyTree, b2: float,
                                   eps: float) -> PyTree:
  """`adam_preconditioner` of the Adam state found in `opt_state` (see `find_adam_state`)."""
  adam = find_adam_state(opt_state)
  return adam_preconditioner(adam.nu, adam.count, grad_seen, b2, eps)


def preconditioned_matvec(matvec: Callable[[PyTree], PyTree], precond: PyTree
                          ) -> Callable[[PyTree], PyTree]:
  """v ↦ P^{-1/2} H P^{-1/2} v for a symmetric `matvec` v ↦ H v and a positive diagonal P.

  Works on whatever `matvec` works on: params pytrees with P a params pytree (e.g. the
  output of `adam_preconditioner`), or raveled vectors with P raveled the same way
  (`jax.flatten_util.ravel_pytree(P)[0]`). The operator is symmetric, and its top eigenvalue is
  Adam's preconditioned sharpness. Its eigenvectors u relate to directions in parameter space
  by w = P^{-1/2} u.
  """
  inv_sqrt = jax.tree.map(jax.lax.rsqrt, precond)
  scale = lambda v: jax.tree.map(jnp.multiply, inv_sqrt, v)
  return lambda v: scale(matvec(scale(v)))
