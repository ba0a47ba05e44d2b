"""The step size of `--lr_schedule=plateau`: η_t = η(t) · s, where η(t) is the constant step size
(with its warm-up, if any) and s a scale the run sets between steps (`run.monitor`: s = factor^k
after k reductions, each after `--plateau_patience` evaluations without improvement).

s lives in the optimizer's state, as the last transformation of the chain,

    updates ← s · updates        (`scale_by_plateau`, state `PlateauState(scale)`, s_0 = 1)

so that it is checkpointed with the state and a resumed run steps with the scale it had. The
final updates of every base optimizer are −η(t)·(its direction), so scaling them by s is the step
size η(t)·s: for momentum and Adam the buffers are those of the gradients, as optax's own
schedules keep them.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sam_edge.pytree import PyTree


class PlateauState(NamedTuple):
  """The scale s of the step size (float32 [])."""
  scale: jax.Array


def scale_by_plateau() -> optax.GradientTransformation:
  """updates ← s · updates, s from the state (module doc)."""
  def init(params: PyTree) -> PlateauState:
    del params
    return PlateauState(jnp.ones([], jnp.float32))

  def update(updates: PyTree, state: PlateauState, params: Any = None):
    del params
    return jax.tree.map(lambda u: (state.scale * u).astype(u.dtype), updates), state
  return optax.GradientTransformation(init, update)


def _is_state(x: Any) -> bool:
  return isinstance(x, PlateauState)


def scale_of(opt_state: PyTree) -> jax.Array:
  """s in `opt_state` (1 when the optimizer has no plateau scale)."""
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_state) if _is_state(x)]
  return found[0].scale if found else jnp.ones([], jnp.float32)


def with_scale(opt_state: PyTree, scale: float) -> PyTree:
  """`opt_state` with s = `scale`, placed as the old s was (the same sharding)."""
  def replace(x: Any) -> Any:
    if not _is_state(x):
      return x
    return PlateauState(jax.device_put(jnp.asarray(scale, jnp.float32), x.scale.sharding))
  return jax.tree.map(replace, opt_state, is_leaf=_is_state)
