"""Stability thresholds: the gradient-descent edge 2/η and the SAM-edge.

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


def sam_edge(grad_norm: jax.Array, step_size: float | jax.Array, rho: float | jax.Array) -> jax.Array:
  """The SAM-edge (4/η) / (sqrt(1 + 8ρ/(η g)) + 1); 2/η when ρ = 0 (even for g = 0)."""
  g = jnp.asarray(grad_norm)
  eta = jnp.asarray(step_size, dtype=g.dtype)
  rho = jnp.asarray(rho, dtype=g.dtype)
  denom = eta * g
  safe_denom = jnp.where(denom > 0, denom, 1.0)
  x = jnp.where(rho == 0, 0.0, jnp.where(denom > 0, 8.0 * rho / safe_denom, jnp.inf))
  return (4.0 / eta) / (jnp.sqrt(1.0 + x) + 1.0)
