"""Linear centred kernel alignment (CKA) of two runs' outputs on the same examples (Kornblith
et al. 2019), in the biased-HSIC form the taxonomy (Yang et al. 2021) uses.

For features X [n, p] and Y [n, q] of the same n examples, with H = I − 11ᵀ/n centring the rows,
K = X Xᵀ and L = Y Yᵀ (linear kernels), HSIC(K, L) = tr(K H L H) / (n − 1)² and

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
              = ‖Ycᵀ Xc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F),      Xc = H X, Yc = H Y,

the second form never building the n × n kernels. CKA ∈ [0, 1]; CKA(X, X) = 1, and it is
unchanged by an orthogonal transform X Q, an isotropic scaling c X (c ≠ 0) or a constant shift
X + 1 bᵀ of either argument. The runs' features are their softmax outputs (class probabilities).
"""

import jax
import jax.numpy as jnp


@jax.jit
def linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
  """CKA of features `x` [n, p] and `y` [n, q] (module doc), computed in float32 or above."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  y = y.astype(jnp.promote_types(y.dtype, jnp.float32))
  xc = x - jnp.mean(x, axis=0, keepdims=True)
  yc = y - jnp.mean(y, axis=0, keepdims=True)
  cross = jnp.sum(jnp.square(yc.T @ xc))
  return cross / (jnp.linalg.norm(xc.T @ xc) * jnp.linalg.norm(yc.T @ yc))


def softmax_outputs(logits: jax.Array) -> jax.Array:
  """The class probabilities softmax(logits) [n, k], the features CKA compares."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
