"""The stability thresholds in closed form: 2/η, the SAM-edge, and the curvature λ with
λ(1 + rλ) = E that SAM variants reach on a base edge E.

For gradient norm g = ||∇L||, step size η and SAM radius ρ, Long and Bartlett's SAM-edge is

    sam_edge = (g / (2ρ)) (sqrt(1 + 8ρ/(η g)) - 1).

Written so, it cancels catastrophically when x = 8ρ/(η g) is small. Multiplying by
(sqrt(1 + x) + 1) / (sqrt(1 + x) + 1) gives the equal form used here,

    sam_edge = (4/η) / (sqrt(1 + 8ρ/(η g)) + 1),

which has no subtraction: it tends to 2/η as ρ → 0 (and is exactly 2/η at ρ = 0, as in the
reference), decreases monotonically in ρ, and stays finite and positive for large ρ
(≈ sqrt(2 g / (η ρ)) as ρ → ∞). For g = 0 and ρ > 0 it is 0, the limit g → 0.
"""

import jax
import jax.numpy as jnp


def two_over_eta(step_size: float | jax.Array) -> jax.Array:
  """The gradient-descent edge of stability, 2/η."""
  return 2.0 / jnp.asarray(step_size)


def sam_edge(grad_norm: jax.Array, step_size: float | jax.Array,
             rho: float | jax.Array) -> jax.Array:
  """The SAM-edge (4/η) / (sqrt(1 + 8ρ/(η g)) + 1); 2/η when ρ = 0 (even for g = 0)."""
  g = jnp.asarray(grad_norm)
  eta = jnp.asarray(step_size, dtype=g.dtype)
  rho = jnp.asarray(rho, dtype=g.dtype)
  denom = eta * g
  safe_denom = jnp.where(denom > 0, denom, 1.0)
  x = jnp.where(rho == 0, 0.0, jnp.where(denom > 0, 8.0 * rho / safe_denom, jnp.inf))
  return (4.0 / eta) / (jnp.sqrt(1.0 + x) + 1.0)


def sam_curvature_edge(base_edge: jax.Array, gain: float | jax.Array) -> jax.Array:
  """The λ > 0 with λ (1 + r λ) = E, r = `gain` ≥ 0, E = `base_edge` > 0: 2E/(1 + sqrt(1 + 4rE)).

  (The root (−1 + sqrt(1 + 4rE))/(2r) of r λ² + λ − E = 0, times (1 + sqrt)/(1 + sqrt): no
  cancellation, and E at r = 0.) Where E ≤ 0 (weight decay at or beyond the base edge: no
  curvature is stable) it returns E.
  """
  e = jnp.asarray(base_edge)
  r = jnp.asarray(gain, e.dtype)
  safe_e = jnp.where(e > 0, e, 1.0)
  return jnp.where(e > 0, 2.0 * safe_e / (1.0 + jnp.sqrt(1.0 + 4.0 * r * safe_e)), e)


def scaled_curvature_edge(base_edge: jax.Array, rho: float, grad_norm: jax.Array) -> jax.Array:
  """`sam_curvature_edge(E, ρ/g)`, and 0 when g = 0 (the limit g → 0)."""
  e = jnp.asarray(base_edge)
  g = jnp.asarray(grad_norm, e.dtype)
  safe_g = jnp.where(g > 0, g, 1.0)
  return jnp.where(g > 0, sam_curvature_edge(e, rho / safe_g), 0.0)
