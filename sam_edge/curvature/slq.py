"""Spectral density of H by stochastic Lanczos quadrature (SLQ; Ghorbani et al., 2019).

The spectral measure of a symmetric H [n, n] with eigenpairs (λ_i, u_i) is μ = (1/n) Σ_i δ(λ_i).
For a unit probe q, μ_q = Σ_i (u_iᵀq)² δ(λ_i) has E[μ_q] = μ whenever E[q qᵀ] = I/n, as for
q = z/||z|| with z Rademacher (||z||² = n exactly) or Gaussian (q uniform on the sphere). m
Lanczos steps from q give the tridiagonal T_m = V_mᵀ H V_m; with T_m = S diag(θ) Sᵀ, Gauss
quadrature replaces μ_q by

    μ_q ≈ Σ_j w_j δ(θ_j),    nodes θ_j (Ritz values),  weights w_j = S_{1j}²  (Σ_j w_j = 1),

exact for polynomials of degree ≤ 2m − 1. SLQ averages P probes: μ ≈ (1/P) Σ_p Σ_j w_pj δ(θ_pj).

Lanczos runs with full reorthogonalisation (`lanczos.lanczos_iteration`, the step of the top
eigensolver: twice Gram-Schmidt against the basis) for exactly m steps. A breakdown
(β_j ≤ 1e3·eps·max|α|: the Krylov space is invariant, e.g. H = cI) sets β_j = 0 and continues
from a random vector orthogonal to the basis: T_m becomes block diagonal, the later blocks' Ritz
vectors have first component 0, so their nodes carry weight 0 and the quadrature is that of the
invariant space, which is exact. (matfree's `decomp.tridiag_sym` divides by β_j: NaN there.)
"""

from typing import Any

import jax
import jax.numpy as jnp

from sam_edge.curvature import lanczos, operators


def lanczos_tridiagonal(matvec: operators.MatVec, v0: jax.Array, key: jax.Array,
                        num_steps: int) -> tuple[jax.Array, jax.Array]:
  """(α [m], β [m − 1]) of T_m = V_mᵀ H V_m from the start vector v0 (module doc), m = num_steps."""
  n, m, dtype = v0.shape[0], num_steps, v0.dtype
  basis = jnp.zeros((m + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
  breakdown_rtol = 1e3 * float(jnp.finfo(dtype).eps)

  def body(j, carry):
    basis, alphas, betas, scale = carry
    alpha, beta, nxt, _ = lanczos.lanczos_iteration(
        matvec, basis, j, scale, jax.random.fold_in(key, j), breakdown_rtol)
    return (basis.at[j + 1].set(nxt), alphas.at[j].set(alpha), betas.at[j].set(beta),
            jnp.maximum(scale, jnp.abs(alpha)))

  init = (basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), jnp.zeros([], dtype))
  _, alphas, betas, _ = jax.lax.fori_loop(0, m, body, init)
  return alphas, betas[:m - 1]


def gauss_quadrature(alphas: jax.Array, betas: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nodes θ [m] (ascending) and weights S_{1j}² [m] of tridiag(β, α, β) = S diag(θ) Sᵀ."""
  t = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
  nodes, vectors = jnp.linalg.eigh(t)
  return nodes, vectors[0] ** 2


def slq(matvec: operators.MatVec, n: int, dtype: Any, key: jax.Array, *, num_probes: int,
        num_steps: int, probe: str = "rademacher") -> dict[str, jax.Array]:
  """SLQ nodes and weights of H's spectral measure (module doc), probes one after another.

  Returns {"nodes": [P, m], "weights": [P, m], "hvps": P·m}; each probe's weights sum to 1.
  """
  if not 1 <= num_steps <= n:
    raise ValueError(f"need 1 <= density steps <= n = {n}, got {num_steps}")
  if num_probes < 1:
    raise ValueError(f"need at least one density probe, got {num_probes}")
  probe_key, restart_key = jax.random.split(key)
  starts = operators.probes(probe_key, num_probes, n, dtype, probe)          # [P, n]
  keys = jax.random.split(restart_key, num_probes)

  def one(args):
    v0, k = args
    return gauss_quadrature(*lanczos_tridiagonal(matvec, v0, k, num_steps))

  nodes, weights = jax.lax.map(one, (starts, keys))
  return {"nodes": nodes, "weights": weights,
          "hvps": jnp.asarray(num_probes * num_steps, jnp.int32)}
