"""Pytree maths beside `optax.tree`: safe normalisation and alignment."""

import jax
import jax.numpy as jnp
import optax

from sam_edge.pytree import PyTree


def safe_normalize(tree: PyTree, eps: float = 0.0) -> tuple[PyTree, jax.Array]:
  """Returns `(tree / (||tree|| + eps), ||tree||)`, and zeros (not NaN) when ||tree|| + eps = 0."""
  norm = optax.tree.norm(tree)
  denom = norm + eps
  factor = jnp.where(denom > 0, 1.0 / jnp.where(denom > 0, denom, 1.0), 0.0)
  return optax.tree.scale(factor, tree), norm


def alignment(a: PyTree, b: PyTree) -> jax.Array:
  """|cos(a, b)| = |<a, b>| / (||a|| ||b||), 0 when either is zero."""
  denom = optax.tree.norm(a) * optax.tree.norm(b)
  dot = optax.tree.vdot(a, b)
  return jnp.where(denom > 0, jnp.abs(dot) / jnp.where(denom > 0, denom, 1.0), 0.0)
