"""Adam's diagonal preconditioner (Cohen et al., "Adaptive gradient methods at the edge of
stability"): the next Adam step from state (μ, ν, t) with incoming gradient d moves w by
−η m̂ / P with

    P = sqrt(ν̂) + eps,   ν̂ = (β2 ν + (1 − β2) d²) / (1 − β2^(t+1)),

and the *preconditioned sharpness* is the top eigenvalue of P^{-1/2} H P^{-1/2}.
"""

import jax
import jax.numpy as jnp
import optax

from sam_edge.pytree import PyTree


def find_adam_state(opt_state: PyTree) -> optax.ScaleByAdamState:
  """The one `optax.ScaleByAdamState` (count, mu, nu) inside an optax state (e.g. in a chain);
  ValueError if there is none or more than one."""
  found = [x for x in jax.tree.leaves(opt_state,
                                      is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
           if isinstance(x, optax.ScaleByAdamState)]
  if len(found) != 1:
    raise ValueError(f"expected one optax.ScaleByAdamState in the optimizer state, found "
                     f"{len(found)}")
  return found[0]


def preconditioner(nu: PyTree, count: jax.Array, grad_seen: PyTree, b2: float,
                   eps: float) -> PyTree:
  """P = sqrt(ν̂) + eps with ν̂ = (b2·ν + (1 − b2)·d²) / (1 − b2^(count+1)), elementwise: the
  diagonal the *next* Adam step from this state applies, with d = `grad_seen` the gradient Adam
  will receive (the SAM variant's direction, plus wd·w with weight decay) and `count` the Adam
  steps taken so far. Well defined at count = 0 (ν = 0 gives P = |d| + eps). A params-shaped
  pytree."""
  correction = 1 - b2 ** (jnp.asarray(count, jnp.int32) + 1)     # as optax's bias correction

  def leaf(v, d):
    nu_hat = (b2 * v + (1.0 - b2) * jnp.square(d)) / correction.astype(v.dtype)
    return jnp.sqrt(nu_hat) + eps
  return jax.tree.map(leaf, nu, grad_seen)


def preconditioner_from_state(opt_state: PyTree, grad_seen: PyTree, b2: float,
                              eps: float) -> PyTree:
  """`preconditioner` of the Adam state found in `opt_state` (see `find_adam_state`)."""
  state = find_adam_state(opt_state)
  return preconditioner(state.nu, state.count, grad_seen, b2, eps)
