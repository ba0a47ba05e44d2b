"""The two sampled regimes: mini-batch heavy ball on the network and on its linearisation.

Each step draws a batch B of b indices without replacement (`scan.batch_indices`) and takes a
heavy-ball step (β < 0 allowed):

* linearized, in function space with K̃ (`problem`): g = (N/b)·K̃[:, B] d[B] (the paper's
  (1/b)·K[:, B] d[B]), p ← g + βp, d ← d − αp, starting from p = 0; L = ‖d‖²/(2N). Exactly the
  linearised network trained by heavy ball, at O(N·b) per step.
* network, in parameter space: g = ∇_w (1/(2b)) Σ_{i∈B} (f(x_i) − y_i)², m ← g + βm,
  w ← w − ηm with η = α·N/λ_max(K); L = (1/(2N)) Σ_i (f(x_i) − y_i)² over all N points,
  computed at the recorded steps only.

Both are one jitted `lax.scan` per run, vectorised over the seeds' keys; the hyperparameters are
traced, so one compilation serves every (α, β) of a batch size.
"""

import functools

import jax
import jax.numpy as jnp

from sam_edge.linear_sgd import network, scan


@functools.partial(jax.jit, static_argnames="batch_size")
def linearized_losses(kernel: jax.Array, d0: jax.Array, alpha: jax.Array, beta: jax.Array,
               keys: jax.Array, record: jax.Array, *, batch_size: int) -> jax.Array:
  """Losses [seeds, steps + 1] (NaN where not recorded) of sampled linearised heavy ball."""
  n = d0.shape[0]

  def one(key: jax.Array) -> jax.Array:
    def step(state: tuple, t: jax.Array) -> tuple:
      d, p = state
      batch = scan.batch_indices(key, t, n, batch_size)
      g = (n / batch_size) * kernel[:, batch] @ d[batch]
      p = g + beta * p
      return d - alpha * p, p
    return scan.losses(step, lambda s: s[0] @ s[0] / (2 * n), (d0, jnp.zeros_like(d0)), record)
  return jax.vmap(one)(keys)


@functools.partial(jax.jit, static_argnames="batch_size")
def network_losses(params: network.Params, x: jax.Array, y: jax.Array, eta: jax.Array,
                   beta: jax.Array, keys: jax.Array, record: jax.Array, *, batch_size: int
                   ) -> jax.Array:
  """Losses [seeds, steps + 1] (NaN where not recorded) of the network trained by mini-batch
  heavy ball with step size η."""
  n = x.shape[0]
  half_mse = lambda p, xs, ys: 0.5 * jnp.mean((network.apply(p, xs) - ys) ** 2)

  def one(key: jax.Array) -> jax.Array:
    def step(state: tuple, t: jax.Array) -> tuple:
      w, m = state
      batch = scan.batch_indices(key, t, n, batch_size)
      g = jax.grad(half_mse)(w, x[batch], y[batch])
      m = jax.tree.map(lambda gi, mi: gi + beta * mi, g, m)
      return jax.tree.map(lambda wi, mi: wi - eta * mi, w, m), m
    start = (params, jax.tree.map(jnp.zeros_like, params))
    return scan.losses(step, lambda s: half_mse(s[0], x, y), start, record)
  return jax.vmap(one)(keys)
