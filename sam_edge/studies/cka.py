"""Linear centred kernel alignment (CKA) of two runs' outputs on the same examples (Kornblith
et al. 2019), in the biased-HSIC form the taxonomy (Yang et al. 2021) uses.

For features X [n, p] and Y [n, q] of the same n examples, with H = I − 11ᵀ/n centring the rows,
K = X Xᵀ and L = Y Yᵀ (linear kernels), HSIC(K, L) = tr(K H L H) / (n − 1)² and

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
              = ‖Ycᵀ Xc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F),      Xc = H X, Yc = H Y,

the second form never building the n × n kernels. CKA ∈ [0, 1]; CKA(X, X) = 1, and it is
unchanged by an orthogonal transform X Q, an isotropic scaling c X (c ≠ 0) or a constant shift
X + 1 bᵀ of either argument. The runs' features are their softmax outputs (class probabilities).

The taxonomy's CKA is on mixup data (`--mixup-CKA --mixup-alpha 16`: CKA_utils.all_latent and
utils.mixup_data): the examples in consecutive batches of B = 128 (its loader's batch), and in
batch b one λ_b ~ Beta(α, α) and one permutation π_b of the batch's rows,

    x̃_i = λ_b x_i + (1 − λ_b) x_{π_b(i)},

both networks of a pair seeing the same x̃ (`mixup`). The images are mixed as float pixel
values: the preprocessing x/256 − mean is affine with weights summing to one, so mixing before or
after it is the same.
"""

import jax
import jax.numpy as jnp

MIXUP_BATCH = 128              # the taxonomy's batch of mixed examples
MIXUP_ALPHA = 16.0             # its α (example_experiment.py: --mixup-alpha 16)


@jax.jit
def linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
  """CKA of features `x` [n, p] and `y` [n, q] (module doc), computed in float32 or above."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  y = y.astype(jnp.promote_types(y.dtype, jnp.float32))
  xc = x - jnp.mean(x, axis=0, keepdims=True)
  yc = y - jnp.mean(y, axis=0, keepdims=True)
  cross = jnp.sum(jnp.square(yc.T @ xc))
  return cross / (jnp.linalg.norm(xc.T @ xc) * jnp.linalg.norm(yc.T @ yc))


def mixup(images: jax.Array, key: jax.Array, alpha: float = MIXUP_ALPHA,
          batch_size: int = MIXUP_BATCH) -> jax.Array:
  """The images mixed as in the module doc, float32 [n, ...]: batch b (rows b·B .. b·B + B − 1,
  the last one shorter) draws λ_b and π_b from `fold_in(key, b)`, so a key fixes every mix."""
  parts = []
  for b, start in enumerate(range(0, images.shape[0], batch_size)):
    x = jnp.asarray(images[start:start + batch_size], jnp.float32)
    lam_key, perm_key = jax.random.split(jax.random.fold_in(key, b))
    lam = jax.random.beta(lam_key, alpha, alpha)
    parts.append(lam * x + (1.0 - lam) * x[jax.random.permutation(perm_key, x.shape[0])])
  return jnp.concatenate(parts)
