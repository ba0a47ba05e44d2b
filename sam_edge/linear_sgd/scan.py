"""What every regime shares: the steps whose loss is recorded, the one `lax.scan` that runs a
regime, and the batches the sampled regimes draw.

The loss is recorded at step 0 and on about `points` steps spaced evenly in log t up to the
last one (every step early on, then sparser), which suits log-log curves and tail fits and keeps
the network's full-data loss off most steps. Inside the scan the loss of a recorded step is
computed under `lax.cond`, so unrecorded steps cost nothing; the predicate does not depend on
the seed, so it stays a branch under `vmap`.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

RECORD_POINTS = 200


def record_mask(steps: int, points: int = RECORD_POINTS) -> np.ndarray:
  """bool [steps + 1]: step 0 and the steps round(geomspace(1, steps, points))."""
  mask = np.zeros(steps + 1, dtype=bool)
  mask[0] = True
  mask[np.unique(np.round(np.geomspace(1, steps, points)).astype(np.int64))] = True
  return mask


def losses(step: Callable[[Any, jax.Array], Any], loss: Callable[[Any], jax.Array], state: Any,
           record: jax.Array) -> jax.Array:
  """The loss [len(record)] of the trajectory state_{t+1} = step(state_t, t) (t = 1, 2, ...)
  at the steps `record` marks, NaN elsewhere: one `lax.scan`."""
  first = loss(state)
  skip = lambda s: jnp.full((), jnp.nan, first.dtype)

  def body(s: Any, t: jax.Array) -> tuple[Any, jax.Array]:
    s = step(s, t)
    return s, jax.lax.cond(record[t], loss, skip, s)
  _, rest = jax.lax.scan(body, state, jnp.arange(1, record.shape[0]))
  return jnp.concatenate([first[None], rest])


def batch_indices(key: jax.Array, t: jax.Array, n: int, b: int) -> jax.Array:
  """The b of the n indices step t draws, without replacement, independently of other steps:
  a pure function of (key, t), so every sampled regime run with one key sees the same batches."""
  return jax.random.choice(jax.random.fold_in(key, t), n, (b,), replace=False)
