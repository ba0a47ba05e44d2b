"""An exponential moving average of the weights (`--ema_decay`), kept in the training state.

With decay d ∈ (0, 1), w_t the parameters and s_t the model state (BatchNorm's running
statistics) after step t, and w_0, s_0 those the run starts from:

    w̄_0 = w_0,   w̄_{t+1} = d·w̄_t + (1 − d)·w_{t+1}        (s̄ alike, from s̄_0 = s_0)

so w̄_t = d^t w_0 + (1 − d) Σ_{k=1..t} d^(t−k) w_k. The BatchNorm statistics are averaged too,
as google-research/sam averages (parameters, state) together; its warm-up (w̄ = w for the first
1560 steps, then d_t = min(d, (1 + t')/(10 + t'))) is not taken: w̄ follows the formula above
from the first step. Leaves that are not floating point (none in our models) are copied, not
averaged. The average never changes the training trajectory.
"""

from typing import Any

import jax
import jax.numpy as jnp

from sam_edge.pytree import PyTree


def init(params: PyTree, model_state: PyTree) -> dict:
  """{"params": w̄_0, "model_state": s̄_0}: copies of w_0 and s_0 (new buffers, so that donating
  the state never donates one buffer twice)."""
  copy = lambda tree: jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
  return {"params": copy(params), "model_state": copy(model_state)}


def average(previous: PyTree, current: PyTree, decay: float) -> PyTree:
  """d·previous + (1 − d)·current, leaf by leaf (non-float leaves: current)."""
  def leaf(a: Any, x: Any) -> Any:
    if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
      return x
    return (decay * a + (1.0 - decay) * x).astype(jnp.result_type(x))
  return jax.tree.map(leaf, previous, current)


def updated(ema: dict, params: PyTree, model_state: PyTree, decay: float) -> dict:
  """{"params": w̄_{t+1}, "model_state": s̄_{t+1}} from w̄_t, s̄_t and the step's new w, s."""
  return {"params": average(ema["params"], params, decay),
          "model_state": average(ema["model_state"], model_state, decay)}
