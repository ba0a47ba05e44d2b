"""The reference's eigensolvers, kept for comparison: power iteration and its top-k form,
subspace iteration. Q ← orth(H Q) until every ||H q_i|| changes by less than `rtol` relatively,
at most `max_iters` iterations; they return magnitudes ||H q_i||, not signed eigenvalues.
"""

import functools

import jax
import jax.numpy as jnp

from sam_edge.curvature.lanczos import EigenResult, MatVec, start_vector


def subspace_iteration(matvec: MatVec, v0: jax.Array, key: jax.Array, *, k: int,
                       max_iters: int = 100, rtol: float = 1e-3) -> EigenResult:
  """The reference's method: Q ← orth(H Q) until every ||H q_i|| changes by < rtol (relative).

  Returns magnitudes ||H q_i|| (not signed eigenvalues), as the reference does; k = 1 is power
  iteration. Residuals are ||H q_i − λ_i q_i|| of the last iterate, at no extra HVP.
  """
  n = v0.shape[0]
  first = start_vector(v0, key)[None]
  rest = jax.random.normal(jax.random.fold_in(key, 1), (k - 1, n), v0.dtype)
  q = jnp.linalg.qr(jnp.concatenate([first, rest]).T)[0].T        # [k, n]
  batched = jax.vmap(matvec)

  def body(s):
    i, q, norms, _, _ = s
    z = batched(q)                                                 # [k, n]
    new_norms = jnp.linalg.norm(z, axis=1)
    change = jnp.max(jnp.abs(new_norms - norms) / jnp.maximum(jnp.abs(norms), 1e-30))
    residuals = jnp.linalg.norm(z - new_norms[:, None] * q, axis=1)
    q_next = jnp.linalg.qr(z.T)[0].T
    return i + 1, q_next, new_norms, change, (q, residuals)

  init = (jnp.zeros([], jnp.int32), q, jnp.zeros(k, v0.dtype), jnp.array(jnp.inf, v0.dtype),
          (q, jnp.zeros(k, v0.dtype)))
  i, _, norms, _, (q_last, residuals) = jax.lax.while_loop(
      lambda s: (s[0] < max_iters) & (s[3] >= rtol), body, init)
  order = jnp.argsort(-norms)
  return EigenResult(norms[order], q_last[order], residuals[order], i * k)


power_iteration = functools.partial(subspace_iteration, k=1)
