"""tr(H) with a standard error, from HVPs only: Hutchinson and Hutch++ (Meyer et al., 2021).

Hutchinson, K Rademacher probes z_i (E[z zᵀ] = I):

    t̂ = (1/K) Σ_i z_iᵀ H z_i,     SE = s / sqrt(K),   s² = Σ_i (z_iᵀHz_i − t̂)² / (K − 1);

Var(zᵀHz) = 2 (||H||_F² − Σ_i H_ii²), so the error falls like 1/sqrt(K).

Hutch++ with a budget of m HVPs: s = ⌊m/3⌋ sketch probes S [n, s], r = m − 2s residual probes G:

    Q = orth(H S)                                    (s HVPs)
    t̂ = tr(Qᵀ H Q) + (1/r) Σ_i g_iᵀ P H P g_i,   P = I − QQᵀ      (s + r HVPs)

The first term is exact for the captured subspace; the second is Hutchinson on the deflated
P H P, whose Frobenius norm lacks the top of the spectrum, so the error can fall like 1/m when
the spectrum decays. Given Q, the second term is an average of r i.i.d. unbiased samples of
tr(PHP) = tr(H) − tr(QᵀHQ), so its sample standard error is an honest SE of t̂:

    SE = s_res / sqrt(r),   s_res² = Σ_i (g_iᵀPHPg_i − mean)² / (r − 1).

Both return {"trace": t̂, "trace_stderr": SE, "trace_hvps": HVPs used}. Hand-written rather than
matfree's `stochtrace`: it has no Hutch++, and its estimators vmap every probe's HVP at once
(K times the memory of one HVP); here HVPs run one after another (`operators.apply_many`).
"""

from typing import Any

import jax
import jax.numpy as jnp

from sam_edge.curvature import operators


def hutchinson(matvec: operators.MatVec, n: int, dtype: Any, key: jax.Array, *, num_probes: int,
               batch_size: int = 1) -> dict[str, jax.Array]:
  """Hutchinson's estimate of tr(H) with `num_probes` (>= 2) Rademacher probes (module doc)."""
  if num_probes < 2:
    raise ValueError(f"Hutchinson needs at least 2 probes for a standard error, got {num_probes}")
  z = operators.probes(key, num_probes, n, dtype)                   # [K, n]
  samples = jnp.sum(z * operators.apply_many(matvec, z, batch_size), axis=1)   # z_iᵀ H z_i
  trace, stderr = operators.sample_mean_and_stderr(samples)
  return {"trace": trace, "trace_stderr": stderr, "trace_hvps": jnp.asarray(num_probes, jnp.int32)}


def hutch_plus_plus_split(num_hvps: int) -> tuple[int, int]:
  """(sketch size s, residual probes r) of Hutch++ with m = `num_hvps`: s = ⌊m/3⌋, r = m − 2s."""
  s = num_hvps // 3
  return s, num_hvps - 2 * s


def hutch_plus_plus(matvec: operators.MatVec, n: int, dtype: Any, key: jax.Array, *,
                    num_probes: int, batch_size: int = 1) -> dict[str, jax.Array]:
  """Hutch++ estimate of tr(H) with a budget of `num_probes` (>= 4) HVPs (module doc)."""
  s, r = hutch_plus_plus_split(num_probes)
  if s < 1 or r < 2:
    raise ValueError(f"Hutch++ needs a budget of at least 4 HVPs, got {num_probes}")
  if s > n:
    raise ValueError(f"Hutch++ sketch of {s} columns exceeds the dimension {n}")
  sketch_key, residual_key = jax.random.split(key)
  sketch = operators.probes(sketch_key, s, n, dtype)                 # Sᵀ [s, n]
  q = jnp.linalg.qr(operators.apply_many(matvec, sketch, batch_size).T)[0]   # Q [n, s]
  hq = operators.apply_many(matvec, q.T, batch_size)                 # (HQ)ᵀ [s, n]
  low_rank = jnp.sum(q.T * hq)                                       # tr(QᵀHQ)
  g = operators.probes(residual_key, r, n, dtype)                    # [r, n]
  g = g - (g @ q) @ q.T                                              # P g_i
  samples = jnp.sum(g * operators.apply_many(matvec, g, batch_size), axis=1)
  residual, stderr = operators.sample_mean_and_stderr(samples)
  return {"trace": low_rank + residual, "trace_stderr": stderr,
          "trace_hvps": jnp.asarray(2 * s + r, jnp.int32)}


ESTIMATORS = {"hutch++": hutch_plus_plus, "hutchinson": hutchinson}


def estimate_trace(matvec: operators.MatVec, n: int, dtype: Any, key: jax.Array, *,
                   num_probes: int, method: str = "hutch++",
                   batch_size: int = 1) -> dict[str, jax.Array]:
  """tr(H) by `method` ("hutch++" or "hutchinson") with `num_probes` HVPs in all."""
  if method not in ESTIMATORS:
    raise ValueError(f"unknown trace method {method!r}: expected one of {tuple(ESTIMATORS)}")
  return ESTIMATORS[method](matvec, n, dtype, key, num_probes=num_probes, batch_size=batch_size)
