"""Random probes, batches of HVPs, and sample statistics for the estimators over a symmetric
operator on raveled vectors.

With w the parameters raveled by `jax.flatten_util.ravel_pytree` (n entries) and L the loss on
one batch, the operator is the exact HVP (forward over reverse, `hvp.operator`)

    matvec(v) = H v = ∇²L(w) v,      v ∈ ℝⁿ.

Probes are Rademacher (entries ±1, so ||z||² = n exactly and E[z zᵀ] = I) or standard Gaussian.
`apply_many` applies the operator to the rows of a [K, n] matrix one after another
(`jax.lax.map`), so K HVPs need the memory of one (a vmap over K would need K times the
activations of the network, which the default transformer cannot afford).
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

MatVec = Callable[[jax.Array], jax.Array]

PROBES = ("rademacher", "gaussian")


def probes(key: jax.Array, num: int, n: int, dtype: Any, kind: str = "rademacher") -> jax.Array:
  """`num` random probe vectors [num, n]: Rademacher (±1) or standard Gaussian entries."""
  if kind == "rademacher":
    return jax.random.rademacher(key, (num, n), dtype)
  if kind == "gaussian":
    return jax.random.normal(key, (num, n), dtype)
  raise ValueError(f"unknown probe distribution {kind!r}: expected one of {PROBES}")


def apply_many(matvec: MatVec, vectors: jax.Array, batch_size: int = 1) -> jax.Array:
  """[H v_1; …; H v_K] for the rows v_i of `vectors` [K, n], `batch_size` HVPs at a time."""
  if vectors.shape[0] == 0:
    return vectors
  return jax.lax.map(matvec, vectors, batch_size=None if batch_size <= 1 else batch_size)


def sample_mean_and_stderr(samples: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean, standard error) of K i.i.d. samples: x̄ and sqrt(Σ(x_i − x̄)² / (K − 1)) / sqrt(K)."""
  k = samples.shape[0]
  mean = jnp.mean(samples)
  stderr = jnp.std(samples, ddof=1) / jnp.sqrt(k) if k > 1 else jnp.full((), jnp.nan, samples.dtype)
  return mean, stderr
