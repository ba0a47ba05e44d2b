"""Image classification datasets read once, whole, into memory from TFDS.

Each split is read in a single batch (``batch_size=-1``) as numpy arrays:
``image`` uint8 ``[N, H, W, C]`` and ``label`` int32 ``[N]``. Optionally only
the first ``n * batch_size`` training / ``m * batch_size`` test examples are
kept ("mini" sets). The mean image is taken over the kept training examples,

  mean_image = (1 / N) sum_{i < N} image_i / 256,

and ``preprocess`` maps ``x -> x / 256 - mean_image`` (float32).

Offline preparation: TFDS looks for each download in ``manual_dir`` under the
file name recorded in its checksum file (see ``expected_manual_files``) before
it tries the network.
"""

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
  import tensorflow_datasets as tfds

SUPPORTED = ("mnist", "fashion_mnist", "cifar10")

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A whole image dataset in host memory.

  Attributes:
    train: {"image": uint8 [N, H, W, C], "label": int32 [N]}.
    test: {"image": uint8 [M, H, W, C], "label": int32 [M]}.
    mean_image: float32 [H, W, C], mean of ``train["image"] / 256``.
    num_classes: number of label classes.
  """

  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  mean_image: np.ndarray
  num_classes: int


def check_supported(name: str) -> None:
  """Raises ValueError unless ``name`` is in ``SUPPORTED``."""
  if name not in SUPPORTED:
    raise ValueError(
        f"Unsupported image dataset {name!r}; supported: {SUPPORTED}"
    )


def expected_manual_files(name: str) -> tuple[str, ...]:
  """File names TFDS looks for in ``manual_dir`` when preparing ``name``.

  TFDS's download manager checks ``manual_dir / url_info.filename`` for every
  URL the builder downloads, with the file names from TFDS's
  ``url_checksums/<name>.txt`` (``tfds.builder_cls(name).url_infos``):

  * mnist, fashion_mnist: the four original IDX gzip files
    ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.
  * cifar10: the builder (``image_classification/cifar.py``, TFDS 4.9.10)
    downloads and extracts the *binary* version,
    https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (170,052,171
    bytes), so the file is ``cifar-10-binary.tar.gz`` (not the python-pickle
    ``cifar-10-python.tar.gz``).

  Args:
    name: one of ``SUPPORTED``.

  Returns:
    The expected file names.

  Raises:
    ValueError: if ``name`` is not supported.
  """
  check_supported(name)
  if name == "cifar10":
    return ("cifar-10-binary.tar.gz",)
  return _IDX_FILES


def check_num_batches(num_batches: int | None) -> None:
  """Raises ValueError unless a mini-set size is None (all) or >= 1."""
  if num_batches is not None and num_batches < 1:
    raise ValueError(f"mini set num_batches must be >= 1, got {num_batches}")


def num_kept(num_examples: int, num_batches: int | None,
             batch_size: int) -> int:
  """Examples kept: ``min(num_examples, num_batches * batch_size)``, or all."""
  check_num_batches(num_batches)
  if num_batches is None:
    return num_examples
  return min(num_examples, num_batches * batch_size)


def _read_split(builder: "tfds.core.DatasetBuilder", split: str,
                num_batches: int | None, batch_size: int
                ) -> dict[str, np.ndarray]:
  """Reads ``split`` whole and keeps its first ``num_kept(...)`` examples."""
  import tensorflow_datasets as tfds
  whole = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  n = num_kept(len(whole["label"]), num_batches, batch_size)
  return {
      # Copies, so that a mini set does not keep the whole split alive.
      "image": np.array(whole["image"][:n], dtype=np.uint8),
      "label": np.array(whole["label"][:n], dtype=np.int32),
  }


def mean_image_of(images: np.ndarray) -> np.ndarray:
  """``mean_i images[i] / 256`` as float32 ``[H, W, C]`` (float64 sums)."""
  return (images.mean(axis=0, dtype=np.float64) / 256).astype(np.float32)


def load_image_dataset(
    name: str,
    *,
    batch_size: int,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    mini_training_set_num_batches: int | None = None,
    mini_test_set_num_batches: int | None = None,
) -> ImageData:
  """Prepares (if needed) and reads a TFDS image dataset into memory.

  Args:
    name: one of ``SUPPORTED``.
    batch_size: training batch size, the unit of the mini-set sizes.
    data_dir: TFDS data directory (TFDS's default when None).
    manual_dir: directory holding ``expected_manual_files(name)``; when given,
      preparation reads the downloads from there instead of the network.
    mini_training_set_num_batches: if set, keep only the first
      ``min(N, n * batch_size)`` training examples.
    mini_test_set_num_batches: if set, keep only the first
      ``min(M, m * batch_size)`` test examples.

  Returns:
    The dataset, with the mean image of the kept training examples.

  Raises:
    ValueError: for an unsupported name, or a batch size or mini-set size
      below 1.
  """
  check_supported(name)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  check_num_batches(mini_training_set_num_batches)
  check_num_batches(mini_test_set_num_batches)
  import tensorflow_datasets as tfds   # here, not at import: it loads TensorFlow (slow, noisy)
  builder = tfds.builder(name, data_dir=data_dir)
  if manual_dir is not None:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  else:
    builder.download_and_prepare()
  train = _read_split(builder, "train", mini_training_set_num_batches,
                      batch_size)
  test = _read_split(builder, "test", mini_test_set_num_batches, batch_size)
  return ImageData(
      train=train,
      test=test,
      mean_image=mean_image_of(train["image"]),
      num_classes=builder.info.features["label"].num_classes,
  )


def preprocess(images: jax.Array, mean_image: jax.Array | np.ndarray
               ) -> jax.Array:
  """``images / 256 - mean_image`` in float32; jit-safe for uint8 inputs.

  Args:
    images: uint8 ``[..., H, W, C]``.
    mean_image: float32 ``[H, W, C]`` (broadcast over leading axes).

  Returns:
    float32 array of the shape of ``images``.
  """
  return images.astype(jnp.float32) / 256 - jnp.asarray(mean_image,
                                                         jnp.float32)
