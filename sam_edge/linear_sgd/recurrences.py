"""The two deterministic regimes: linearised heavy ball averaged exactly over batch samplings,
and its spectral-diagonal (SD) approximation.

Each step draws b of the N indices without replacement, independently of other steps;
γ = (N−b)/((N−1)b) (`conditions.gamma`) measures the sampling noise (0 at b = N). With
u_t = d_t − d_{t−1} the step is u′ = −αg + βu, d′ = d + u′.

**Averaged** (exact). The state is C = E[ddᵀ], J = E[duᵀ] and P = E[uuᵀ], from C = d₀d₀ᵀ and
J = P = 0. Averaging over the batch (E[g gᵀ] mixes the pair and the diagonal terms of the
selection) gives the second moment of the new increment and the update:

    Q  = α²(1−γ)K̃CK̃ + γα²N·K̃·Diag(diag C)·K̃ − αβ(K̃J + (K̃J)ᵀ) + β²P
    C′ = C − α(K̃C + CK̃) + β(J + Jᵀ) + Q
    J′ = βJ − αCK̃ + Q
    P′ = Q,                                        L = tr C/(2N).

O(N³) per step (`--max_averaged_examples` bounds N). CK̃ is computed as written, not as
(K̃C)ᵀ: the two agree only for an exactly symmetric C, and with the transpose the recurrence is
no longer the second-moment map on all matrices; it then has growing antisymmetric modes that
rounding excites (at N = 100 the loss went negative and overflowed while the sampled runs
converged).

**Spectral diagonal**. Keep only the diagonals C_k, J_k, P_k in the eigenbasis of K̃ and
replace the diagonal term by a mean-field closure with parameter τ:

    Q_k  = (αλ_k)²C_k − 2αβλ_kJ_k + β²P_k + γ(αλ_k)²(Σ_l C_l − τC_k)
    C_k′ = C_k − 2αλ_kC_k + 2βJ_k + Q_k
    J_k′ = βJ_k − αλ_kC_k + Q_k
    P_k′ = Q_k,                                    L = mean_k C_k / 2,

from C_k(0) = (u_k·d₀)², J = P = 0. τ = 1 is the paper's mean-field choice, τ = −1 its Gaussian
one; at b = N (γ = 0) it is deterministic heavy ball, mode by mode. O(N) per step.

Both are one jitted `lax.scan`; α, β, γ and τ are traced (one compilation per N and length).
"""

import jax
import jax.numpy as jnp

from sam_edge.linear_sgd import scan


@jax.jit
def averaged_losses(kernel: jax.Array, d0: jax.Array, alpha: jax.Array, beta: jax.Array,
                    gamma: jax.Array, record: jax.Array) -> jax.Array:
  """Losses [steps + 1] (NaN where not recorded) of the averaged recurrence."""
  n = d0.shape[0]

  def step(state: tuple, t: jax.Array) -> tuple:
    c, j, p = state
    kc, ck, kj = kernel @ c, c @ kernel, kernel @ j
    q = (alpha ** 2 * (1 - gamma) * kc @ kernel
         + gamma * alpha ** 2 * n * (kernel * jnp.diag(c)) @ kernel
         - alpha * beta * (kj + kj.T) + beta ** 2 * p)
    return c - alpha * (kc + ck) + beta * (j + j.T) + q, beta * j - alpha * ck + q, q
  zero = jnp.zeros((n, n), d0.dtype)
  return scan.losses(step, lambda s: jnp.trace(s[0]) / (2 * n), (jnp.outer(d0, d0), zero, zero),
                     record)


@jax.jit
def spectral_diagonal_losses(eigenvalues: jax.Array, c0: jax.Array, alpha: jax.Array,
                             beta: jax.Array, gamma: jax.Array, tau: jax.Array,
                             record: jax.Array) -> jax.Array:
  """Losses [steps + 1] (NaN where not recorded) of the spectral-diagonal recurrence."""
  h = alpha * eigenvalues

  def step(state: tuple, t: jax.Array) -> tuple:
    c, j, p = state
    q = h ** 2 * c - 2 * beta * h * j + beta ** 2 * p + gamma * h ** 2 * (jnp.sum(c) - tau * c)
    return c - 2 * h * c + 2 * beta * j + q, beta * j - h * c + q, q
  zero = jnp.zeros_like(c0)
  return scan.losses(step, lambda s: jnp.mean(s[0]) / 2, (c0, zero, zero), record)
