"""IDX files (MNIST's and Fashion-MNIST's original format), read straight into numpy.

An IDX file is a header and the array: two zero bytes, a type byte (0x08 unsigned byte, 0x09
signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions d,
then d big-endian uint32 sizes, then the values in C order, big-endian. Files ending in `.gz`
are read through gzip. A file that does not follow this layout is an `InputError` naming it.
"""

import gzip
import os

import numpy as np

from sam_edge import errors

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def read(path: str) -> np.ndarray:
  """The array held by the IDX file `path` (native byte order)."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise errors.InputError(f"{path} cannot be read: {e}") from e
  if len(data) < 4 or data[0] or data[1] or data[2] not in TYPES:
    raise errors.InputError(f"{path} is not an IDX file (bad magic number)")
  ndim = data[3]
  header = 4 + 4 * ndim
  shape = tuple(int(s) for s in np.frombuffer(data[4:header], ">u4")) if ndim else ()
  dtype = np.dtype(TYPES[data[2]])
  if len(data) - header != int(np.prod(shape)) * dtype.itemsize:
    raise errors.InputError(f"{path} holds {len(data) - header} bytes of values, but its header "
                            f"says {shape} of {dtype.itemsize} bytes")
  return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def count(path: str) -> int:
  """The first dimension of the IDX file `path` (the number of examples), read from its header
  alone."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      head = f.read(8)
  except (OSError, EOFError) as e:
    raise errors.InputError(f"{path} cannot be read: {e}") from e
  if len(head) < 8 or head[0] or head[1] or head[2] not in TYPES or head[3] < 1:
    raise errors.InputError(f"{path} is not an IDX file (bad magic number)")
  return int(np.frombuffer(head[4:8], ">u4")[0])


def mnist_train(folder: str, n: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `n` training images (uint8 [n, rows·columns], flattened) and labels (int [n]) of
  an MNIST-format folder holding `MNIST_TRAIN`."""
  images, labels = (read(os.path.join(folder, name)) for name in MNIST_TRAIN)
  if len(images) != len(labels):
    raise errors.InputError(f"{folder}: {len(images)} training images but {len(labels)} labels")
  return images[:n].reshape(min(n, len(images)), -1), labels[:n].astype(np.int64)
