"""The inputs x [N, D] and targets y [N] of the real-data problems (`--data=mnist|cifar10|csv`),
prepared as the paper's code prepares them (github.com/Godofnothing/PowerLawOptimization,
`datasets/get_data.py`), in NumPy float64.

**Subsets** (`--subset`), drawn by a NumPy generator seeded with `--seed`:

* `stratified` (the default for images; the paper's `train_test_split(stratify=labels)`): each
  class c of the n_c training examples gets ⌊N·n_c/n⌋ of the N, the R examples left over going
  one each to the classes with the largest remainders N·n_c/n − ⌊N·n_c/n⌋ (ties: the lower
  class); each class's examples are drawn without replacement, and the N are shuffled;
* `random` (the default for CSV; the paper's `train_test_split(shuffle=True)`): N rows drawn
  uniformly without replacement, shuffled;
* `first`: the first N (this tool's behaviour before subsets existed).

**Standardisation**, z = (v − m)/s with s the sample standard deviation (n − 1, as torch's
`std`):

* images, stratified or random (`get_image_dataset`): m and s are one scalar each over every
  pixel of the whole training split; the target is the label (the digit or class index) with m
  and s over the whole split's labels;
* images, first: m and s over the N chosen images and their labels only, with the population
  standard deviation (n), exactly as before;
* CSV (`get_uci_data`): each feature column and the target with their own m and s over the N
  chosen rows; a feature constant over them is 0 throughout, and a constant target is refused.
"""

import os
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from sam_edge import errors
from sam_edge.data import idx
from sam_edge.linear_sgd import tables

SUBSETS = ("stratified", "random", "first")


class Inputs(NamedTuple):
  """x [N, D] and y [N] (float64, standardised) and a few words on what they are."""
  x: np.ndarray
  y: np.ndarray
  description: str


def stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
  """n indices of `labels`, each class in proportion to its share (module doc), shuffled."""
  classes, counts = np.unique(labels, return_counts=True)
  share = n * counts / counts.sum()
  take = np.floor(share).astype(np.int64)
  leftover = np.argsort(-(share - take), kind="stable")[:n - int(take.sum())]
  take[leftover] += 1
  chosen = [rng.choice(np.flatnonzero(labels == c), k, replace=False)
            for c, k in zip(classes, take)]
  return rng.permutation(np.concatenate(chosen))


def subset(how: str, total: int, n: int, seed: int,
           labels: Optional[np.ndarray] = None) -> np.ndarray:
  """The indices of the N chosen of `total` examples (`how`: one of SUBSETS; `stratified` needs
  the labels)."""
  rng = np.random.default_rng(seed)
  if how == "first":
    return np.arange(n)
  if how == "random":
    return rng.permutation(total)[:n]
  return stratified(labels, n, rng)


def standardised(values: np.ndarray, over: Optional[np.ndarray] = None, ddof: int = 1,
                 axis: Optional[int] = None) -> np.ndarray:
  """(v − m)/s with m and s the mean and standard deviation of `over` (default: `values`) along
  `axis` (None: all entries); where s = 0 the result is 0."""
  over = values if over is None else over
  mean = np.mean(over, axis=axis, dtype=np.float64)
  std = np.std(over, axis=axis, dtype=np.float64, ddof=ddof)
  centred = values.astype(np.float64) - mean
  return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def from_images(images: np.ndarray, labels: np.ndarray, n: int, how: str, seed: int,
                name: str) -> Inputs:
  """The N chosen of the training `images` [n, ...] (uint8) with their `labels` (module doc)."""
  if n > len(labels):
    raise errors.InputError(f"--num_examples={n} but the {name} training split holds "
                            f"{len(labels)} examples")
  chosen = subset(how, len(labels), n, seed, labels)
  flat = images.reshape(len(images), -1)
  if how == "first":
    x, y = standardised(flat[chosen], ddof=0), standardised(labels[chosen], ddof=0)
  else:
    x, y = standardised(flat[chosen], over=flat), standardised(labels[chosen], over=labels)
  return Inputs(x, y, f"{name}, {n} {how} training images")


def mnist(folder: str, n: int, how: str, seed: int) -> Inputs:
  """MNIST's training split read from its IDX files in `folder`."""
  images, labels = idx.mnist_train(folder, idx.count(os.path.join(folder, idx.MNIST_TRAIN[0])))
  return from_images(images, labels, n, how, seed, "MNIST")


def cifar10(data_dir: Optional[str], manual_dir: Optional[str], n: int, how: str, seed: int,
            log: Callable[[str], None]) -> Inputs:
  """CIFAR-10's training split through TFDS (`data.images`: prepared from `manual_dir` once)."""
  from sam_edge.data import images  # pylint: disable=import-outside-toplevel  (jax, TFDS)
  data = images.load_image_dataset("cifar10", batch_size=1, data_dir=data_dir,
                                   manual_dir=manual_dir, log=log)
  return from_images(data.train["image"], data.train["label"].astype(np.int64), n, how, seed,
                     "CIFAR-10")


def csv(path: str, target: Sequence[str], features: Optional[Sequence[str]], n: int, how: str,
        seed: int) -> Inputs:
  """The N chosen rows of a CSV file (`tables`), standardised column by column (module doc)."""
  table = tables.read(path, target, features)
  if n > table.rows:
    raise errors.InputError(f"--num_examples={n} but --csv_path={path} holds {table.rows} rows")
  chosen = subset(how, table.rows, n, seed)
  y = table.target[chosen]
  if np.ptp(y) == 0:
    raise errors.InputError(f"--target_column={','.join(table.target_names)} is constant over "
                            f"the {n} chosen rows of {path}: nothing to fit")
  x = standardised(table.features[chosen], axis=0)
  known = f" ({table.layout})" if table.layout else ""
  return Inputs(x, standardised(y), f"{os.path.basename(path)}{known}, {n} {how} rows, "
                f"{len(table.feature_names)} features → {','.join(table.target_names)}")
