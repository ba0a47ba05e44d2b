"""The order in which a run visits its training examples: a pure function of (seed, step), so a
resumed run sees the batches an uninterrupted one sees (`--batch_order`).

  shuffled   a fresh permutation every epoch (`batching.batch_indices`); the images' default,
             as the SAM papers' recipes reshuffle every epoch.
  reference  the reference implementation's order:
             * images (`StreamOrder`): stored (TFDS) order, unshuffled, repeated: step s takes
               examples (s B + j) mod N, j < B;
             * text (`BufferedOrder`): the windows in corpus order, repeated, through a shuffle
               buffer of M = 10 B windows (tf.data's `shuffle`): the buffer starts with windows
               0..M−1; each draw takes the window in a uniformly random slot r and refills that
               slot with the next window of the stream; a batch is B consecutive draws. Early
               batches therefore come from the start of the corpus.

The buffer is replayed, not approximated: with slots r_0, r_1, ... drawn from a generator seeded
by (seed, stream), draw i returns stream element M + j, j the last draw before i that took slot
r_i, or r_i itself if none did; element e is window e mod N. Draws up to any step are computed
in vectorised chunks (`buffer_draws`), so jumping to step s (a resume) costs O(s B) integer
operations, milliseconds for long runs.

With B = N (full batch) every order is the whole set in order (`None`: no gather at all). The
device orders import jax only when a step is traced, so the flags can name the orders at no cost.
"""

from typing import Any, Optional

import numpy as np

ORDERS = ("reference", "shuffled")
BUFFER_BATCHES = 10
CHUNK = 1 << 16


class ShuffledOrder:
  """A fresh permutation every epoch (module doc), drawn once per epoch: `host_indices(step,
  key)` slices step s's B indices out of the epoch's permutation (`batching.epoch_permutation`,
  kept until the epoch or the key changes) and the step gathers them. Drawing it inside every
  step instead (`device_indices`, the same indices) sorts N keys twice per step for B rows."""
  host = True

  def __init__(self, num_examples: int, batch_size: int):
    self.n, self.batch_size = num_examples, batch_size
    self._epoch: tuple = (None, None)           # ((epoch, key bytes), its permutation)
    self._key: tuple = (None, None)             # (the key last asked with, its bytes)

  def host_indices(self, step: int, key: Any) -> Optional[np.ndarray]:
    """Row indices int32 [B] of step `step` (None for the full batch: no gather)."""
    if self.batch_size == self.n:
      return None
    import jax  # pylint: disable=import-outside-toplevel

    from sam_edge.data import batching  # pylint: disable=import-outside-toplevel  (module doc)
    epoch, position = divmod(int(step), self.n // self.batch_size)
    if key is not self._key[0]:          # a key read back once, not at every step
      raw = (jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
             else key)
      self._key = (key, np.asarray(raw).tobytes())
    which = (epoch, self._key[1])
    if self._epoch[0] != which:
      self._epoch = (which, np.asarray(batching.epoch_permutation(key, epoch, self.n)))
    return self._epoch[1][position * self.batch_size:(position + 1) * self.batch_size]

  def device_indices(self, key: Any, step: Any) -> Optional[Any]:
    from sam_edge.data import batching  # pylint: disable=import-outside-toplevel  (module doc)
    if self.batch_size == self.n:
      return None
    return batching.batch_indices(key, step, self.n, self.batch_size)


class StreamOrder:
  """Stored order, repeated: step s takes (s B + j) mod N (module doc), on the device."""
  host = False

  def __init__(self, num_examples: int, batch_size: int):
    self.n, self.batch_size = num_examples, batch_size

  def device_indices(self, key: Any, step: Any) -> Optional[Any]:
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel  (module doc)
    del key
    if self.batch_size == self.n:
      return None
    first = jnp.asarray(step, jnp.int32) * self.batch_size
    return (first + jnp.arange(self.batch_size, dtype=jnp.int32)) % self.n


def _slots(rng: np.random.Generator, count: int, buffer_size: int) -> np.ndarray:
  return rng.integers(0, buffer_size, size=count, dtype=np.int64)


def _advance(slot_content: np.ndarray, slots: np.ndarray, first_draw: int,
             buffer_size: int) -> np.ndarray:
  """The stream elements drawn at draws first_draw, first_draw + 1, ... from `slots`, updating
  `slot_content` (the stream element each slot holds) in place."""
  order = np.argsort(slots, kind="stable")
  ordered = slots[order]
  same = np.concatenate([[False], ordered[1:] == ordered[:-1]])
  out = np.empty(len(slots), np.int64)
  out[order] = slot_content[ordered]                          # no earlier draw of the slot here
  earlier = order[np.flatnonzero(same) - 1]                   # the previous draw of that slot
  out[order[same]] = buffer_size + first_draw + earlier
  last = np.concatenate([ordered[1:] != ordered[:-1], [True]])
  slot_content[ordered[last]] = buffer_size + first_draw + order[last]
  return out


def buffer_draws(num_items: int, buffer_size: int, seed: tuple[int, ...], count: int,
                 start: int = 0) -> np.ndarray:
  """Draws start .. start + count − 1 of the shuffle buffer (module doc), as item indices
  int64 [count] in [0, num_items): a pure function of its arguments."""
  rng = np.random.default_rng(seed)
  slot_content = np.arange(buffer_size, dtype=np.int64)
  drawn, out = 0, []
  while drawn < start + count:
    n = min(CHUNK, start + count - drawn)
    got = _advance(slot_content, _slots(rng, n, buffer_size), drawn, buffer_size)
    lo, hi = max(start - drawn, 0), n
    if lo < hi:
      out.append(got[lo:hi])
    drawn += n
  return np.concatenate(out) % num_items if out else np.zeros(0, np.int64)


class BufferedOrder:
  """The reference's text order (module doc), drawn on the host: `host_indices(step)` gives
  step s's B window indices, continuing the buffer for the next step and replaying it from the
  start (`buffer_draws`) when asked for an earlier step."""
  host = True

  def __init__(self, num_items: int, batch_size: int, seed: tuple[int, ...],
               buffer_size: Optional[int] = None):
    self.n, self.batch_size, self.seed = num_items, batch_size, seed
    self.buffer_size = buffer_size or BUFFER_BATCHES * batch_size
    self._restart()

  def _restart(self) -> None:
    self._rng = np.random.default_rng(self.seed)
    self._slot_content = np.arange(self.buffer_size, dtype=np.int64)
    self._drawn = 0
    self._last: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int32))

  def _draw(self, count: int) -> np.ndarray:
    got = _advance(self._slot_content, _slots(self._rng, count, self.buffer_size), self._drawn,
                   self.buffer_size)
    self._drawn += count
    return got

  def host_indices(self, step: int, key: Any = None) -> np.ndarray:
    """Window indices int32 [B] of step `step` (`key` unused: the buffer has its seed)."""
    if step == self._last[0]:
      return self._last[1]
    first = step * self.batch_size
    if first < self._drawn:
      self._restart()
    while self._drawn + CHUNK <= first:
      self._draw(CHUNK)
    if self._drawn < first:
      self._draw(first - self._drawn)
    indices = (self._draw(self.batch_size) % self.n).astype(np.int32)
    self._last = (step, indices)
    return indices


def whole_batches(num_items: int, batch_size: int) -> int:
  """⌊N/B⌋·B: the items the reference keeps (it drops the remainder beyond whole batches)."""
  return num_items // batch_size * batch_size


def reference_test_batches(num_windows: int, num_characters: int, batch_size: int,
                           sequence_length: int, seed: tuple[int, ...]) -> np.ndarray:
  """The reference's test batches, window indices int64 [K, B]: K = ⌊characters/(B·T)⌋ batches
  drawn through the shuffle buffer (module doc) from the ⌊W/B⌋·B kept test windows."""
  count = num_characters // (batch_size * sequence_length)
  kept = whole_batches(num_windows, batch_size)
  draws = buffer_draws(kept, BUFFER_BATCHES * batch_size, seed, count * batch_size)
  return draws.reshape(count, batch_size)
