"""The streamed training order: which stored examples step s takes, and which of them this
process reads, a pure function of (seed, step) computed directly from s (random access, no
replay), on the host without jax (grain's worker processes compute it too).

With N examples, batch size B and S = ⌊N/B⌋ steps per epoch (the remainder is dropped, as the
in-memory `order.ShuffledOrder` drops it), step s of epoch e = ⌊s/S⌋ at position q = s mod S
takes the stored examples

  global_s[j] = perm_e[q B + j],     j < B,

perm_e a permutation of range(N) drawn from a NumPy generator seeded by (seed, ORDER_TAG, e): a
fresh shuffle every epoch. The examples the stream has handed out before step s are the global
positions g < s B, and example j of step s sits at g = s B + j.

Several processes (P hosts under `jax.distributed`, this one p): process p reads the elements
j = p B/P, ..., (p + 1) B/P − 1 of every global batch (P dividing B), so the union of the P local
batches of step s is exactly global_s, and laid side by side in process order (as the mesh lays
its devices: `jax.make_array_from_process_local_data`) they are global_s in its order: the same
global batch, row for row, for any number of processes. The local example i of step s is
j = p B/P + i.

A host-augmented example draws its randomness from a generator seeded by (seed, AUGMENT_TAG, g),
g its global position: never from which worker or process decoded it.
"""

import dataclasses

import numpy as np

ORDER_TAG = 0x6F726472           # b"ordr"
AUGMENT_TAG = 0x61756721         # b"aug!"
MEASURE_TAG = 0x6D657321         # b"mes!"


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """perm_e, int64 [N]: the permutation of range(N) of epoch e (module doc)."""
  return np.random.default_rng([seed, ORDER_TAG, epoch]).permutation(n)


def example_rng(seed: int, position: int) -> np.random.Generator:
  """The generator of the example at global position g (module doc): its host augmentation."""
  return np.random.default_rng([seed, AUGMENT_TAG, position])


def measured_indices(seed: int, n: int, count: int) -> np.ndarray:
  """The stored indices int64 [count] of the fixed measured set: `count` distinct examples drawn
  from a generator seeded by (seed, MEASURE_TAG)."""
  return np.random.default_rng([seed, MEASURE_TAG]).choice(n, count, replace=False)


@dataclasses.dataclass
class StreamOrder:
  """The order of module doc for N = `num_examples`, B = `batch_size`, this process p of P.
  The permutation of the epoch last asked for is kept (one draw per epoch)."""
  num_examples: int
  batch_size: int
  seed: int
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self) -> None:
    if not 1 <= self.batch_size <= self.num_examples:
      raise ValueError(f"batch size {self.batch_size} must be between 1 and the "
                       f"{self.num_examples} examples")
    if self.batch_size % self.process_count:
      raise ValueError(f"the batch size {self.batch_size} is not divisible by the "
                       f"{self.process_count} processes")
    self._cached: tuple = (None, None)

  @property
  def steps_per_epoch(self) -> int:
    """S = ⌊N/B⌋."""
    return self.num_examples // self.batch_size

  @property
  def local_batch_size(self) -> int:
    """B/P: the examples of each step this process reads."""
    return self.batch_size // self.process_count

  def _permutation(self, epoch: int) -> np.ndarray:
    if self._cached[0] != epoch:
      self._cached = (epoch, epoch_permutation(self.seed, epoch, self.num_examples))
    return self._cached[1]

  def global_indices(self, step: int) -> np.ndarray:
    """global_s, int64 [B]: the stored indices of step s's whole batch."""
    epoch, q = divmod(int(step), self.steps_per_epoch)
    return self._permutation(epoch)[q * self.batch_size:(q + 1) * self.batch_size]

  def local_slots(self) -> np.ndarray:
    """j = p B/P + i, int64 [B/P]: the places in every global batch this process reads."""
    return self.process_index * self.local_batch_size + np.arange(self.local_batch_size)

  def local_indices(self, step: int) -> np.ndarray:
    """The stored indices int64 [B/P] of this process's part of step s."""
    return self.global_indices(step)[self.local_slots()]

  def local_example(self, k: int) -> tuple[int, int]:
    """(stored index, global position g) of this process's k-th streamed example (k = s B/P + i:
    local example i of step s)."""
    step, i = divmod(int(k), self.local_batch_size)
    j = self.process_index * self.local_batch_size + i
    return int(self.global_indices(step)[j]), step * self.batch_size + j
