"""The covariance Σ of the oscillation in the critical eigenspace: a small semidefinite
complementarity problem (SDCP), solved once per substep.

With U = [u_1..u_k] the top-k Hessian eigenvectors (λ_1 ≥ .. ≥ λ_k), H_ij(w) = u_iᵀ H(w) u_j and
∇H_ij = ∇³L[u_i, u_j], the central flow is

    dw/dt = −η [∇L + ½ Σ_ij Σ_ij ∇H_ij]        (t in GD steps)

and Σ ⪰ 0 keeps the k×k matrix A = (2/η) I − UᵀHU positive semi-definite. Over one Euler substep
of length dt, A moves to

    A' = α + β[Σ],   α_ij = (2/η − λ_i) δ_ij + dt·η ⟨∇H_ij, ∇L⟩,
                     β[Σ]_ij = (dt·η/2) Σ_kl ⟨∇H_ij, ∇H_kl⟩ Σ_kl,

and Σ solves  Σ ⪰ 0,  α + β[Σ] ⪰ 0,  ⟨Σ, α + β[Σ]⟩ = 0  (each critical eigenvalue stays at or
below 2/η, with equality on the directions that oscillate). β is a Gram operator (PSD), so this
is the optimality condition of the convex problem  min_{Σ⪰0} ½⟨Σ, β[Σ]⟩ + ⟨α, Σ⟩, solved here
by accelerated projected gradient (projection onto the PSD cone by clipping eigenvalues).

k = 1 is closed form: σ² = max(0, −α/β). On the edge (λ_1 = 2/η) that is the paper's
σ² = max(0, −2⟨∇S, ∇L⟩/‖∇S‖²), which holds dS/dt = 0. The gap term 2/η − λ_i of α (as in the
paper's reference code) brings an S that overshot 2/η back within one substep.
"""

import jax
import jax.numpy as jnp

ITERATIONS = 5000
TOLERANCE = 1e-7


def coefficients(eigenvalues: jax.Array, gram: jax.Array, drift: jax.Array, step_size: float,
                 dt: float) -> tuple[jax.Array, jax.Array]:
  """(α [k,k], β [k,k,k,k]) of the module doc from λ [k], gram[i,j,k,l] = ⟨∇H_ij, ∇H_kl⟩ and
  drift[i,j] = ⟨∇H_ij, ∇L⟩."""
  alpha = jnp.diag(2.0 / step_size - eigenvalues) + dt * step_size * drift
  return alpha, 0.5 * dt * step_size * gram


def apply(beta: jax.Array, sigma: jax.Array) -> jax.Array:
  """β[Σ]_ij = Σ_kl β_ijkl Σ_kl."""
  return jnp.einsum("ijkl,kl->ij", beta, sigma)


def project_psd(x: jax.Array) -> jax.Array:
  """The nearest PSD matrix to the symmetric part of `x` (Frobenius norm)."""
  values, vectors = jnp.linalg.eigh(0.5 * (x + x.T))
  return (vectors * jnp.maximum(values, 0.0)) @ vectors.T


def solve(alpha: jax.Array, beta: jax.Array, iterations: int = ITERATIONS,
          tol: float = TOLERANCE) -> jax.Array:
  """Σ ⪰ 0 with α + β[Σ] ⪰ 0 and ⟨Σ, α + β[Σ]⟩ = 0 (module doc), by FISTA with adaptive
  restart on min_{Σ⪰0} ½⟨Σ, β[Σ]⟩ + ⟨α, Σ⟩, until an iteration moves Σ by at most
  tol·‖Σ‖ (Frobenius) or after `iterations`; Σ = 0 when α ⪰ 0. k = 1 is exact."""
  k = alpha.shape[0]
  if k == 1:
    b = beta.reshape(())
    return jnp.maximum(0.0, -alpha / jnp.where(b > 0, b, 1.0)) * (b > 0)
  matrix = beta.reshape(k * k, k * k)
  lipschitz = jnp.linalg.eigvalsh(0.5 * (matrix + matrix.T))[-1]
  tiny = jnp.finfo(alpha.dtype).tiny
  rate = 1.0 / jnp.maximum(lipschitz, tiny)

  def body(carry):
    x, y, t, i, _ = carry
    nxt = project_psd(y - rate * (apply(beta, y) + alpha))
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    restart = jnp.vdot(apply(beta, y) + alpha, nxt - x) > 0      # momentum against descent
    y_next = jnp.where(restart, nxt, nxt + ((t - 1.0) / t_next) * (nxt - x))
    moved = jnp.linalg.norm(nxt - x) > tol * jnp.maximum(jnp.linalg.norm(nxt), tiny)
    return nxt, y_next, jnp.where(restart, 1.0, t_next), i + 1, moved

  zero = jnp.zeros_like(alpha)
  one = jnp.ones([], alpha.dtype)
  x, *_ = jax.lax.while_loop(lambda c: c[4] & (c[3] < iterations), body,
                             (zero, zero, one, jnp.zeros([], jnp.int32), jnp.ones([], bool)))
  stable = jnp.linalg.eigvalsh(0.5 * (alpha + alpha.T))[0] >= 0
  return jnp.where(stable | (lipschitz <= tiny), zero, x)


def predicted_loss(loss: jax.Array, eigenvalues: jax.Array, sigma: jax.Array) -> jax.Array:
  """The time-averaged loss the flow predicts: L(w) + ½⟨Σ, UᵀHU⟩ = L + ½ Σ_i Σ_ii λ_i (≈ L +
  ½ tr(Σ)·2/η on the edge)."""
  return loss + 0.5 * jnp.sum(jnp.diag(sigma) * eigenvalues)
