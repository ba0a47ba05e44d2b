"""Stability thresholds: the gradient-descent edge 2/η and the SAM-edge.

For gradient norm g = ||∇L||, step size η and SAM radius ρ, Long and Bartlett's SAM-edge is

    sam_edge = (g / (2ρ)) (sqrt(1 + 8ρ/(η g)) - 1).

Written so, it cancels catastrophically when x = 8ρ/(η g) is small. Multiplying by
(sqrt(1 + x) + 1) / (sqrt(1 + x) + 1) gives the equal form used here,

    sam_edge = (4/η) / (sqrt(1 + 8ρ/(η g)) + 1),

which has no subtraction: it tends to 2/η as ρ → 0 (and is exactly 2/η at ρ = 0, as in the
reference), decreases monotonically in ρ, and stays finite and positive for large ρ
(≈ sqrt(2 g / (η ρ)) as ρ → ∞). For g = 0 and ρ > 0 it is 0, the limit g → 0.

Every other method's edge follows, each derived in its docstring from the method's linear
recurrence on a quadratic, and `method_edge` / `edge_label` pick the one of a configuration:

    GD 2/η · heavy ball (2+2β)/η · Nesterov (2+2β)/(η(1+2β)) for β ≥ −1/3, (1+1/|β|)/η below ·
    normalised SAM the SAM-edge · unnormalised SAM the λ with λ(1+ρλ) = the base edge ·
    Adam 2(1+β1)/((1−β1)η) for the preconditioned sharpness · otherwise None (none known).
"""

from typing import Optional

import jax
import jax.numpy as jnp

from sam_edge import optimizers, steps


def two_over_eta(step_size: float | jax.Array) -> jax.Array:
  """The gradient-descent edge of stability, 2/η."""
  return 2.0 / jnp.asarray(step_size)


def sam_edge(grad_norm: jax.Array, step_size: float | jax.Array, rho: float | jax.Array) -> jax.Array:
  """The SAM-edge (4/η) / (sqrt(1 + 8ρ/(η g)) + 1); 2/η when ρ = 0 (even for g = 0)."""
  g = jnp.asarray(grad_norm)
  eta = jnp.asarray(step_size, dtype=g.dtype)
  rho = jnp.asarray(rho, dtype=g.dtype)
  denom = eta * g
  safe_denom = jnp.where(denom > 0, denom, 1.0)
  x = jnp.where(rho == 0, 0.0, jnp.where(denom > 0, 8.0 * rho / safe_denom, jnp.inf))
  return (4.0 / eta) / (jnp.sqrt(1.0 + x) + 1.0)


# ---------------------------------------------------------------------------------------------
# Every method's edge. On the quadratic L = ½ wᵀ H w a method is stable (its iterates converge
# from every start) iff it is stable on each eigen-direction, L = ½ a w² with curvature a; the
# edge is the largest a for which it is, and the stable curvatures form the interval (0, edge).
# For the second-order recurrences below, with characteristic polynomial x² + c1 x + c0, both
# roots lie strictly inside the unit circle iff (Jury)
#     (J1) 1 + c1 + c0 > 0,   (J2) 1 − c1 + c0 > 0,   (J3) |c0| < 1;
# at a violated condition a root crosses the circle and beyond it the iterates grow.
# h = η a throughout.
# ---------------------------------------------------------------------------------------------

OPTIMIZERS = optimizers.OPTIMIZERS
SAM_KINDS = steps.SAM_KINDS
NESTEROV_BREAK = -1.0 / 3.0


def heavy_ball_edge(step_size: float | jax.Array, momentum: float | jax.Array) -> jax.Array:
  """(2 + 2β)/η: heavy ball, optax.sgd(η, momentum=β): m ← g + β m, w ← w − η m.

  On L = ½ a w², η m_{t−1} = w_{t−1} − w_t, so w_{t+1} = (1 + β − h) w_t − β w_{t−1}, with
  characteristic polynomial x² − (1 + β − h) x + β. Jury: (J1) h > 0; (J3) |β| < 1, true for
  every β in (−1, 1), negative included; (J2) 2 + 2β − h > 0. So a < (2 + 2β)/η, which is 2/η
  at β = 0.
  """
  eta = jnp.asarray(step_size)
  return (2.0 + 2.0 * jnp.asarray(momentum, eta.dtype)) / eta


def nesterov_edge(step_size: float | jax.Array, momentum: float | jax.Array) -> jax.Array:
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
  β ≤ −1/2 only (J3) binds. At β = 0 both give 2/η; at β = −1/2 the edge is 3/η (where the first
  formula would be infinite).
  """
  eta = jnp.asarray(step_size)
  beta = jnp.asarray(momentum, eta.dtype)
  j2 = (2.0 + 2.0 * beta) / jnp.where(beta >= NESTEROV_BREAK, 1.0 + 2.0 * beta, 1.0)
  j3 = 1.0 + 1.0 / jnp.where(beta < NESTEROV_BREAK, jnp.abs(beta), 1.0)
  return jnp.where(beta >= NESTEROV_BREAK, j2, j3) / eta


def adam_edge(step_size: float | jax.Array, b1: float | jax.Array) -> jax.Array:
  """2(1 + β1)/((1 − β1) η), the edge of the *preconditioned* sharpness λ1(P^{-1/2} H P^{-1/2}).

  Adam with a frozen preconditioner P (Cohen et al.; bias corrections ≈ 1 late in training):
  m ← β1 m + (1 − β1) g, w ← w − η P⁻¹ m. With u = P^{1/2} w and m' = P^{-1/2} m / (1 − β1),
  on L = ½ wᵀ H w: m' ← β1 m' + à u and u ← u − η(1 − β1) m', with à = P^{-1/2} H P^{-1/2}. That
  is heavy ball with momentum β1 and step η(1 − β1) on Ã, whose edge (2 + 2β1)/(η(1 − β1)) is
  derived in `heavy_ball_edge` (valid for β1 in (−1, 1)). 38/η at β1 = 0.9.
  """
  eta = jnp.asarray(step_size)
  b1 = jnp.asarray(b1, eta.dtype)
  return 2.0 * (1.0 + b1) / ((1.0 - b1) * eta)


def sam_curvature_edge(base_edge: jax.Array, gain: float | jax.Array) -> jax.Array:
  """The λ > 0 with λ (1 + r λ) = E, r = `gain` ≥ 0, E = `base_edge` > 0: 2E/(1 + sqrt(1 + 4rE)).

  (The root (−1 + sqrt(1 + 4rE))/(2r) of r λ² + λ − E = 0, times (1 + sqrt)/(1 + sqrt): no
  cancellation, and E at r = 0.) Where E ≤ 0 (weight decay at or beyond the base edge: no
  curvature is stable) it returns E.

  Unnormalised SAM on L = ½ wᵀ H w: g_SAM = H (w + ρ H w) = (H + ρ H²) w, so SAM with a *linear*
  base method (GD, heavy ball, Nesterov) is that method on the curvatures a (1 + ρ a); as
  a ↦ a(1 + ρa) increases on a > 0, the edge is the λ with λ(1 + ρλ) = the base edge (r = ρ).
  Normalised SAM with GD, in the step from w with g = ||∇L(w)||: the eigen-component of curvature
  a is multiplied by 1 − η a (1 + ρ a / g), which is the same with r = ρ/g and E = 2/η.
  """
  e = jnp.asarray(base_edge)
  r = jnp.asarray(gain, e.dtype)
  safe_e = jnp.where(e > 0, e, 1.0)
  return jnp.where(e > 0, 2.0 * safe_e / (1.0 + jnp.sqrt(1.0 + 4.0 * r * safe_e)), e)


def unnormalized_sam_edge(step_size: float | jax.Array, rho: float | jax.Array) -> jax.Array:
  """Unnormalised SAM with GD: the λ with η λ (1 + ρ λ) = 2, i.e. (4/η)/(1 + sqrt(1 + 8ρ/η)).

  On L = ½ a w²: ε = ρ a w, g_SAM = a (1 + ρ a) w, w ← (1 − η a (1 + ρ a)) w, stable iff
  0 < η a (1 + ρ a) < 2. 2/η at ρ = 0. (`sam_curvature_edge(2/η, ρ)`.)
  """
  return sam_curvature_edge(two_over_eta(step_size), rho)


def base_edge(optimizer: str, step_size: float | jax.Array, *, momentum: float = 0.9,
              adam_b1: float = 0.9) -> jax.Array:
  """The base optimizer's edge without SAM: 2/η, (2+2β)/η, Nesterov's, or Adam's."""
  if optimizer == "sgd":
    return two_over_eta(step_size)
  if optimizer == "momentum":
    return heavy_ball_edge(step_size, momentum)
  if optimizer == "nesterov":
    return nesterov_edge(step_size, momentum)
  if optimizer == "adam":
    return adam_edge(step_size, adam_b1)
  raise ValueError(f"unknown optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")


def _edge_kind(optimizer: str, sam_kind: str, rho: float, group_size: Optional[int],
               batch_size: Optional[int], weight_decay: float) -> Optional[str]:
  """Which closed form applies (static): 'base', 'sam', 'unnormalized', or None for none known."""
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
  if sam_kind not in SAM_KINDS:
    raise ValueError(f"unknown SAM kind {sam_kind!r}: expected one of {', '.join(SAM_KINDS)}")
  if optimizer == "adam" and weight_decay != 0:
    return None      # P^{-1/2}(H + wd I)P^{-1/2}: not a function of λ1(P^{-1/2} H P^{-1/2})
  if rho == 0:
    return "base"
  if group_size is not None and group_size != batch_size:
    return None      # m-sharpness: no closed form known
  if sam_kind == "normalized":
    return "sam" if optimizer == "sgd" else None
  if sam_kind == "unnormalized":
    return "unnormalized" if optimizer in ("sgd", "momentum", "nesterov") else None
  return None        # adaptive (ASAM)


def method_edge(optimizer: str, sam_kind: str, rho: float, step_size: float | jax.Array, *,
                momentum: float = 0.9, adam_b1: float = 0.9,
                grad_norm: Optional[jax.Array] = None, group_size: Optional[int] = None,
                batch_size: Optional[int] = None, weight_decay: float = 0.0
                ) -> Optional[jax.Array]:
  """The stability edge of the configured method at a step of size η (a float or traced scalar).

      ρ = 0                      the base edge E: 2/η, (2+2β)/η, Nesterov's (`nesterov_edge`),
                                 or 2(1+β1)/((1−β1)η) for Adam's preconditioned sharpness
      normalized SAM + sgd       the SAM-edge(||g||, η, ρ) (`sam_edge`; needs `grad_norm`)
      unnormalized SAM + sgd,    the λ with λ(1 + ρλ) = E (`sam_curvature_edge`)
        momentum or nesterov
      anything else              None: normalised SAM with momentum, Nesterov or Adam,
                                 unnormalised SAM with Adam, ASAM, m-sharpness (group_size set
                                 and ≠ batch_size)

  L2 weight decay wd adds wd·w to what the base method sees, i.e. it trains on the curvatures
  a + wd: a linear method's edge for the loss Hessian becomes E − wd, and the SAM edges solve
  λ(1 + rλ) = E − wd (`sam_curvature_edge`). With Adam and wd > 0 the edge is None (the decay
  term is preconditioned too, so the threshold is not one on λ1(P^{-1/2} H P^{-1/2})).
  `rho`, the kinds, `group_size`, `batch_size` and `weight_decay` are static (Python values):
  whether the result is None is decided at trace time.
  """
  kind = _edge_kind(optimizer, sam_kind, rho, group_size, batch_size, weight_decay)
  if kind is None:
    return None
  if kind == "sam" and grad_norm is None:
    raise ValueError("the SAM-edge of normalised SAM needs grad_norm")
  edge = base_edge(optimizer, step_size, momentum=momentum, adam_b1=adam_b1)
  if kind == "sam" and weight_decay == 0:
    return sam_edge(grad_norm, step_size, rho)           # exactly today's SAM-edge
  edge = edge - weight_decay if weight_decay else edge
  if kind == "base":
    return edge
  if kind == "unnormalized":
    return sam_curvature_edge(edge, rho)
  g = jnp.asarray(grad_norm, edge.dtype)                   # normalised SAM, GD, weight decay
  safe_g = jnp.where(g > 0, g, 1.0)
  return jnp.where(g > 0, sam_curvature_edge(edge, rho / safe_g), 0.0)


def edge_label(optimizer: str, sam_kind: str, rho: float, *, momentum: float = 0.9,
               adam_b1: float = 0.9, group_size: Optional[int] = None,
               batch_size: Optional[int] = None, weight_decay: float = 0.0) -> Optional[str]:
  """The name of `method_edge`'s formula for plots, e.g. "(2+2β)/η, β=0.9"; None when it is None.

  "2/η", "(2+2β)/η", "(2+2β)/(η(1+2β))" (β ≥ −1/3) or "(1+1/|β|)/η" (β < −1/3),
  "2(1+β1)/((1−β1)η)", "SAM-edge", "unnormalised SAM-edge" (GD) or "unnormalised SAM-edge of
  <base>"; the numeric β, β1 follow, and with weight decay "− wd" and its value.
  """
  kind = _edge_kind(optimizer, sam_kind, rho, group_size, batch_size, weight_decay)
  if kind is None:
    return None
  values = []
  if optimizer == "sgd":
    formula = "2/η"
  elif optimizer == "momentum":
    formula, values = "(2+2β)/η", [f"β={momentum:g}"]
  elif optimizer == "nesterov":
    formula = "(2+2β)/(η(1+2β))" if momentum >= NESTEROV_BREAK else "(1+1/|β|)/η"
    values = [f"β={momentum:g}"]
  else:
    formula, values = "2(1+β1)/((1−β1)η)", [f"β1={adam_b1:g}"]
  if weight_decay:
    formula, values = f"{formula} − wd", values + [f"wd={weight_decay:g}"]
  if kind == "sam":
    formula = "SAM-edge"
  elif kind == "unnormalized":
    formula = "unnormalised SAM-edge" + ("" if formula == "2/η" else f" of {formula}")
  return ", ".join([formula] + values)
