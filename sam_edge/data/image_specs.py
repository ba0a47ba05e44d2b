"""The image datasets by name, without loading anything: their sizes, shapes, classes, the files
TFDS needs offline, which split is the held-out test set, whether the dataset can be read into
memory at all, and signatures that identify MNIST's and Fashion-MNIST's splits.

ImageNet (``imagenet2012``, ILSVRC 2012) is prepared by TFDS from the two archives the user
downloads from image-net.org (``manual_files``, in ``--manual_dir``). Its images are JPEGs of
varying sizes (1,281,167 for training; the training archive alone is 148 GB), so no in-memory
path can hold them: it is ``streaming_only`` (``in_memory_problem`` says so in one line naming
``STREAM_FLAG``). Its TFDS ``test`` split has no labels, so its held-out test set is the 50,000
labelled images of the ``validation`` split (``test_split``), whose top-1 and top-5 errors the
runs record as ``test_error`` and ``test_error_top5``, as the SAM paper reports them.

A data dir prepared by an older version may hold one dataset built from the other's files (TFDS
4.9.10 extracts every archive to ``extract_dir / f"{METHOD}.{file name}"`` and reuses that path,
and the two datasets share their four IDX file names). The label counts and pixel sums of their
splits (``SIGNATURES``, read off the original IDX files) identify such a folder
(``swapped_with``).
"""

import dataclasses

import numpy as np

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What TFDS 4.9.10 holds for one dataset (see the TFDS catalogue).

  ``train_size`` and ``test_size`` are the examples in the ``train`` and ``test`` splits,
  ``image_shape`` is ``(H, W, C)``, ``num_classes`` the label classes (also
  ``builder.info.features["label"]``), ``manual_files`` the file names TFDS looks for in
  ``manual_dir`` and ``version`` the version TFDS builds (its folder under the data dir).
  ``test_split`` is the TFDS split held out as the test set (``test_size`` its examples);
  ``image_shape`` is ``(None, None, C)`` for images of varying sizes, ``streaming_only``
  marks a dataset too large to read into memory, and ``image_size`` is the side its stream crops
  to by default (`--image_size`).
  """

  train_size: int
  test_size: int
  image_shape: tuple[int | None, int | None, int]
  num_classes: int
  manual_files: tuple[str, ...]
  version: str
  test_split: str = "test"
  streaming_only: bool = False
  image_size: int | None = None


SPECS = {
    "mnist": DatasetSpec(60_000, 10_000, (28, 28, 1), 10, _IDX_FILES, "3.0.1"),
    "fashion_mnist": DatasetSpec(60_000, 10_000, (28, 28, 1), 10, _IDX_FILES, "3.0.1"),
    "cifar10": DatasetSpec(50_000, 10_000, (32, 32, 3), 10,
                           ("cifar-10-binary.tar.gz",), "3.0.2"),
    "cifar100": DatasetSpec(50_000, 10_000, (32, 32, 3), 100,
                            ("cifar-100-binary.tar.gz",), "3.0.2"),
    # TFDS prepares the 531,131-example "extra" split too, so it needs its file
    # (1.3 GB) although only train and test are read here.
    "svhn_cropped": DatasetSpec(73_257, 26_032, (32, 32, 3), 10,
                                ("train_32x32.mat", "test_32x32.mat",
                                 "extra_32x32.mat"), "3.1.0"),
    # The test split of TFDS's imagenet2012 has no labels: the validation split is the test set.
    "imagenet2012": DatasetSpec(1_281_167, 50_000, (None, None, 3), 1000,
                                ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"), "5.1.0",
                                test_split="validation", streaming_only=True,
                                image_size=224),
}



# The datasets the in-memory path reads, and those read only through the stream.
SUPPORTED = tuple(name for name, spec in SPECS.items() if not spec.streaming_only)
STREAMED = {name: spec for name, spec in SPECS.items() if spec.streaming_only}


TRAIN_SIZES = {name: spec.train_size for name, spec in SPECS.items()}


# The flag of the streaming input pipeline, which a streaming-only dataset needs.
STREAM_FLAG = "--data_pipeline=stream"


# Per split: (examples, sum of all pixel values, label counts), computed from
# the original IDX files (tests/test_datasets_offline.py recomputes them).
SIGNATURES = {
    "mnist": {
        "train": (60_000, 1_567_298_545,
                  (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)),
        "test": (10_000, 264_923_200,
                 (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
    },
    "fashion_mnist": {
        "train": (60_000, 3_431_114_169, (6000,) * 10),
        "test": (10_000, 573_469_082, (1000,) * 10),
    },
}


def check_supported(name: str) -> None:
  """Raises ValueError unless ``name`` is in ``SUPPORTED``."""
  if name not in SUPPORTED:
    raise ValueError(
        f"Unsupported image dataset {name!r}; supported: {SUPPORTED}"
    )


def in_memory_problem(name: str) -> str | None:
  """Why the dataset ``name`` cannot be read whole into memory (one line naming ``STREAM_FLAG``),
  or None when it can (and for a name not in ``SPECS``)."""
  spec = SPECS.get(name)
  if spec is None or not spec.streaming_only:
    return None
  return (f"--dataset={name} cannot be read into memory ({spec.train_size:,} training images of "
          f"varying sizes): it needs the streaming input pipeline, {STREAM_FLAG}")


def expected_manual_files(name: str) -> tuple[str, ...]:
  """File names TFDS looks for in ``manual_dir`` when preparing ``name``.

  TFDS's download manager checks ``manual_dir / url_info.filename`` for every
  URL the builder downloads, with the file names from TFDS's checksum files
  (``tfds.builder_cls(name).url_infos``):

  * mnist, fashion_mnist: the four original IDX gzip files
    ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.
  * cifar10 / cifar100: the *binary* versions ``cifar-10-binary.tar.gz`` /
    ``cifar-100-binary.tar.gz`` (not the python-pickle ``*-python.tar.gz``).
  * svhn_cropped: ``train_32x32.mat``, ``test_32x32.mat`` and
    ``extra_32x32.mat`` (TFDS prepares the extra split too).
  * imagenet2012: ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar``
    from image-net.org (after registering there; TFDS cannot download them).

  Raises ValueError if ``name`` is not one of ``SPECS``.
  """
  return spec(name).manual_files


def spec(name: str) -> DatasetSpec:
  """``SPECS[name]``; ValueError naming the known datasets for any other name."""
  if name not in SPECS:
    raise ValueError(f"Unknown image dataset {name!r}; known: {tuple(SPECS)}")
  return SPECS[name]


def signature(split: dict[str, np.ndarray], num_classes: int
              ) -> tuple[int, int, tuple[int, ...]]:
  """(examples, sum of all pixel values, label counts) of a whole split."""
  counts = np.bincount(split["label"], minlength=num_classes)
  return (len(split["label"]), int(split["image"].sum(dtype=np.int64)),
          tuple(int(c) for c in counts))


def swapped_with(name: str, whole: dict[str, dict[str, np.ndarray]],
                 num_classes: int) -> str | None:
  """The other dataset whose files ``name``'s prepared splits were built from.

  ``whole`` maps "train"/"test" to the whole splits. A split is attributed to
  another dataset when its pixel sum or its label counts equal that dataset's
  (``SIGNATURES``) and not ``name``'s own. Returns None when nothing points to
  another dataset (including datasets without a known signature).
  """
  own = SIGNATURES.get(name, {})
  for split_name, split in whole.items():
    got = None                                # Computed once, and only if the size matches.
    for other, splits in SIGNATURES.items():
      n, pixel_sum, counts = splits[split_name]
      if other == name or len(split["label"]) != n:
        continue
      got = got or signature(split, num_classes)
      mine = own.get(split_name)
      if ((got[1] == pixel_sum and (not mine or mine[1] != pixel_sum))
          or (got[2] == counts and (not mine or mine[2] != counts))):
        return other
  return None
