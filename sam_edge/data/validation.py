"""A held-out validation split of the training set (`--validation_fraction`), stratified by class.

For N training labels in K classes, class c holding n_c of them, a fraction p and a key:

  m   = floor(p N + 1/2)                                   validation examples in all
  q_c = floor(p n_c) + 1 for the m − Σ_c floor(p n_c) classes with the largest remainders
        p n_c − floor(p n_c) (ties: the lower class), else floor(p n_c)
  V_c = the first q_c of class c's indices in a uniform permutation drawn from the key

so exactly m examples are held out, each class in proportion to its size (to within one). The
validation set is V = ∪_c V_c and the training set what remains, both in their original order.
The key is a pure function of the seed (`validation_key(init_key)`), so a run and its
resumptions hold out the same examples; the split is taken before label noise, so validation
labels are clean, as test labels are (`label_noise` corrupts the training labels only).
"""

import math
from typing import Any

import numpy as np

VALIDATION_TAG = 0x76616C21  # b"val!" as an integer.


def validation_key(init_key: Any) -> Any:
  """fold_in(init_key, VALIDATION_TAG): the key of the validation split. (jax is imported here
  and below, not at the top: the command line's checks count the split without it.)"""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.random.fold_in(init_key, VALIDATION_TAG)


def num_held_out(num_examples: int, fraction: float) -> int:
  """m = floor(fraction · N + 1/2), the examples held out."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
  return math.floor(fraction * num_examples + 0.5)


def quotas(counts: np.ndarray, fraction: float) -> np.ndarray:
  """q_c of the module doc for class sizes `counts` int [K]: Σ_c q_c = num_held_out(Σ n_c, p)."""
  counts = np.asarray(counts, np.int64)
  exact = fraction * counts.astype(np.float64)
  base = np.floor(exact).astype(np.int64)
  extra = num_held_out(int(counts.sum()), fraction) - int(base.sum())
  order = np.lexsort((np.arange(len(counts)), -(exact - base)))      # largest remainder first
  base[order[:max(extra, 0)]] += 1
  return np.minimum(base, counts)


def stratified_split(labels: np.ndarray, fraction: float, key: Any
                     ) -> tuple[np.ndarray, np.ndarray]:
  """(training indices, validation indices), int64, each ascending (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel
  labels = np.asarray(labels)
  _, counts = np.unique(labels, return_counts=True)
  permutation = np.asarray(jax.random.permutation(key, len(labels)))
  # each class's indices in permuted order, the classes one after another (a stable sort)
  by_class = permutation[np.argsort(labels[permutation], kind="stable")]
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.arange(len(labels)) - np.repeat(starts, counts)         # position within its class
  held = np.zeros(len(labels), bool)
  held[by_class[rank < np.repeat(quotas(counts, fraction), counts)]] = True
  return np.flatnonzero(~held), np.flatnonzero(held)


def take(split: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
  """The rows `indices` of every array of `split`."""
  return {name: np.asarray(value)[indices] for name, value in split.items()}
