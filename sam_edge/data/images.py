"""Image classification datasets read once, whole, into memory from TFDS.

Each split is read in a single batch (``batch_size=-1``) as numpy arrays:
``image`` uint8 ``[N, H, W, C]`` and ``label`` int32 ``[N]``. Optionally only
the first ``n * batch_size`` training / ``m * batch_size`` test examples are
kept ("mini" sets). The mean image is taken over the kept training examples,

  mean_image = (1 / N) sum_{i < N} image_i / 256,

and ``preprocess`` maps ``x -> x / 256 - mean_image`` (float32).

Preparation (once per data dir) never shares extracted files between datasets.
TFDS 4.9.10 extracts every archive to ``extract_dir / f"{METHOD}.{file name}"``
and reuses that path if it exists (``DownloadManager._extract``). A file taken
from ``manual_dir`` keeps its bare name, and MNIST and Fashion-MNIST use the
same four IDX names, so with TFDS's shared ``<data_dir>/downloads/extracted``
the second dataset prepared was silently built from the first one's extracted
files. Here each preparation extracts into a fresh temporary folder, deleted
afterwards, so what is prepared is what the checksummed downloads hold.

A data dir prepared before that fix may hold one dataset built from the other's
files. The label counts and pixel sums of MNIST's and Fashion-MNIST's splits
(``SIGNATURES``, read off the original IDX files) identify such a folder; it is
refused with an ``InputError`` naming the folder to delete.

Offline: when the dataset is not prepared and no ``manual_dir`` is given, the
download hosts are probed with a short timeout first; if they cannot be
reached the load fails at once with an ``InputError`` naming the URLs to fetch
and the ``--manual_dir`` flag, instead of TFDS's minutes of retries.

``ImageData.fingerprint`` identifies the data actually used: sha256 over the
kept arrays' bytes, ``sha256(image bytes || label bytes)`` per split (images
uint8 C-order, labels int32 little-endian).
"""

import dataclasses
import hashlib
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import errors

if TYPE_CHECKING:
  import tensorflow_datasets as tfds

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What TFDS 4.9.10 holds for one dataset (see the TFDS catalogue).

  Attributes:
    train_size: examples in the ``train`` split.
    test_size: examples in the ``test`` split.
    image_shape: ``(H, W, C)``.
    num_classes: label classes (also ``builder.info.features["label"]``).
    manual_files: the file names TFDS looks for in ``manual_dir``.
  """

  train_size: int
  test_size: int
  image_shape: tuple[int, int, int]
  num_classes: int
  manual_files: tuple[str, ...]


SPECS = {
    "mnist": DatasetSpec(60_000, 10_000, (28, 28, 1), 10, _IDX_FILES),
    "fashion_mnist": DatasetSpec(60_000, 10_000, (28, 28, 1), 10, _IDX_FILES),
    "cifar10": DatasetSpec(50_000, 10_000, (32, 32, 3), 10,
                           ("cifar-10-binary.tar.gz",)),
    "cifar100": DatasetSpec(50_000, 10_000, (32, 32, 3), 100,
                            ("cifar-100-binary.tar.gz",)),
    # TFDS prepares the 531,131-example "extra" split too, so it needs its file
    # (1.3 GB) although only train and test are read here.
    "svhn_cropped": DatasetSpec(73_257, 26_032, (32, 32, 3), 10,
                                ("train_32x32.mat", "test_32x32.mat",
                                 "extra_32x32.mat")),
}
SUPPORTED = tuple(SPECS)
TRAIN_SIZES = {name: spec.train_size for name, spec in SPECS.items()}

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

PROBE_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A whole image dataset in host memory.

  Attributes:
    train: {"image": uint8 [N, H, W, C], "label": int32 [N]}.
    test: {"image": uint8 [M, H, W, C], "label": int32 [M]}.
    mean_image: float32 [H, W, C], mean of ``train["image"] / 256``.
    num_classes: number of label classes.
    fingerprint: {"dataset", "version", "train_sha256", "test_sha256"}: the
      TFDS name and version, and ``split_sha256`` of the kept splits.
  """

  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  mean_image: np.ndarray
  num_classes: int
  fingerprint: dict[str, str] = dataclasses.field(default_factory=dict)


def check_supported(name: str) -> None:
  """Raises ValueError unless ``name`` is in ``SUPPORTED``."""
  if name not in SUPPORTED:
    raise ValueError(
        f"Unsupported image dataset {name!r}; supported: {SUPPORTED}"
    )


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

  Args:
    name: one of ``SUPPORTED``.

  Returns:
    The expected file names.

  Raises:
    ValueError: if ``name`` is not supported.
  """
  check_supported(name)
  return SPECS[name].manual_files


def download_urls(name: str) -> tuple[str, ...]:
  """The URLs TFDS 4.9.10 downloads to prepare ``name`` (sorted)."""
  check_supported(name)
  import tensorflow_datasets as tfds
  return tuple(sorted(tfds.builder_cls(name).url_infos))


def probe_urls(name: str) -> tuple[str, ...]:
  """The URLs probed before downloading ``name`` (tests replace this)."""
  return download_urls(name)


def unreachable(urls: Sequence[str], timeout: float) -> str | None:
  """Why the hosts of ``urls`` cannot be reached, or None if they all can.

  One HEAD request per host (honouring the proxy environment variables, as
  TFDS's downloader does); any HTTP answer, even an error status, counts as
  reachable. The whole probe, name resolution included, waits at most about
  ``timeout`` seconds per host.
  """
  hosts = {}
  for url in urls:
    hosts.setdefault(urllib.parse.urlsplit(url).netloc, url)
  for host, url in hosts.items():
    outcome: list[str | None] = []

    def head(url: str = url, outcome: list = outcome) -> None:
      try:
        urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=timeout
        ).close()
        outcome.append(None)
      except urllib.error.HTTPError:
        outcome.append(None)                      # The host answered.
      except Exception as e:  # pylint: disable=broad-except
        reason = getattr(e, "reason", e)
        outcome.append(f"{host}: {reason}".replace("\n", " "))

    thread = threading.Thread(target=head, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if not outcome:
      return f"{host}: no answer in {timeout:g} s"
    if outcome[0] is not None:
      return outcome[0]
  return None


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


def split_sha256(split: dict[str, np.ndarray]) -> str:
  """``sha256(image bytes || label bytes)`` in hex (uint8 / int32 <, C order)."""
  digest = hashlib.sha256()
  digest.update(np.ascontiguousarray(split["image"], np.uint8).tobytes())
  digest.update(np.ascontiguousarray(split["label"], "<i4").tobytes())
  return digest.hexdigest()


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


def _read_whole(builder: "tfds.core.DatasetBuilder", split: str
                ) -> dict[str, np.ndarray]:
  """Reads ``split`` whole as {"image": uint8, "label": int32} numpy arrays."""
  import tensorflow_datasets as tfds
  whole = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return {"image": np.asarray(whole["image"], dtype=np.uint8),
          "label": np.asarray(whole["label"], dtype=np.int32)}


def _keep(split: dict[str, np.ndarray], num_batches: int | None,
          batch_size: int) -> dict[str, np.ndarray]:
  """The first ``num_kept(...)`` examples, copied (a mini set does not keep the
  whole split alive)."""
  n = num_kept(len(split["label"]), num_batches, batch_size)
  return {key: np.array(value[:n]) for key, value in split.items()}


def mean_image_of(images: np.ndarray) -> np.ndarray:
  """``mean_i images[i] / 256`` as float32 ``[H, W, C]`` (float64 sums)."""
  return (images.mean(axis=0, dtype=np.float64) / 256).astype(np.float32)


def _local_source(builder: "tfds.core.DatasetBuilder", name: str,
                  manual_dir: str | None) -> str | None:
  """The folder TFDS will read ``name``'s files from: ``manual_dir``, or TFDS's
  default ``<data_dir>/downloads/manual`` if it holds them all; else None.

  Raises:
    InputError: if ``manual_dir`` lacks some of the expected files.
  """
  if manual_dir is not None:
    missing = [f for f in expected_manual_files(name)
               if not os.path.isfile(os.path.join(manual_dir, f))]
    if missing:
      raise errors.InputError(
          f"--manual_dir={manual_dir} lacks the {name} files {', '.join(missing)}")
    return manual_dir
  default = os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")
  if all(os.path.isfile(os.path.join(default, f))
         for f in expected_manual_files(name)):
    return default
  return None


def _prepare(builder: "tfds.core.DatasetBuilder", name: str,
             manual_dir: str | None, probe_timeout: float,
             log: Callable[[str], None]) -> None:
  """Prepares ``name`` into ``builder.data_dir``, extracting into a temporary
  folder of its own (see the module doc); fails fast when offline."""
  import tensorflow_datasets as tfds
  source = _local_source(builder, name, manual_dir)
  if source is None:
    reason = unreachable(probe_urls(name), probe_timeout)
    if reason is not None:
      raise errors.InputError(
          f"{name} is not prepared in {builder.data_dir} and cannot be downloaded "
          f"({reason}): download {' and '.join(download_urls(name))} into a folder "
          "and pass it as --manual_dir=FOLDER")
    log(f"downloading and preparing {name} into {builder.data_dir} (once; later "
        "runs read it from there)")
  else:
    flag = "--manual_dir=" if source == manual_dir else ""
    log(f"preparing {name} from {flag}{source} into {builder.data_dir} (once; "
        "later runs read it from there)")
  # TFDS's own lines say "Downloading and preparing dataset Unknown size" even
  # offline, then "downloaded and prepared": the line above replaces them.
  builder._log_download_bytes = lambda: None  # pylint: disable=protected-access
  builder._log_download_done = lambda: None  # pylint: disable=protected-access
  downloads = os.path.join(os.fspath(builder.data_dir_root), "downloads")
  os.makedirs(downloads, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix=f"{name}.extracting.",
                                   dir=downloads) as extract_dir:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=source, extract_dir=extract_dir,
        # With local files, never fetch TFDS's prepared copy from GCS instead.
        try_download_gcs=source is None))


def load_image_dataset(
    name: str,
    *,
    batch_size: int,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    mini_training_set_num_batches: int | None = None,
    mini_test_set_num_batches: int | None = None,
    probe_timeout: float = PROBE_TIMEOUT_S,
    log: Callable[[str], None] = print,
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
    probe_timeout: seconds to wait for each download host when the dataset
      must be downloaded.
    log: prints the one line saying a preparation is happening.

  Returns:
    The dataset, with the mean image of the kept training examples and the
    fingerprint of the kept splits.

  Raises:
    ValueError: for an unsupported name, or a batch size or mini-set size
      below 1.
    errors.InputError: the data cannot be had (not prepared, no manual_dir and
      the download hosts unreachable; a manual_dir lacking files), or the
      prepared folder holds another dataset's data.
  """
  check_supported(name)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  check_num_batches(mini_training_set_num_batches)
  check_num_batches(mini_test_set_num_batches)
  import tensorflow_datasets as tfds   # here, not at import: it loads TensorFlow (slow, noisy)
  builder = tfds.builder(name, data_dir=data_dir)
  if not os.path.exists(os.fspath(builder.data_path)):
    _prepare(builder, name, manual_dir, probe_timeout, log)
  elif not builder.is_prepared():          # TFDS would "reuse" it, then fail to read it.
    raise errors.InputError(
        f"{builder.data_path} is not a complete {name} preparation (no dataset_info.json "
        "or features.json): delete that folder and run again")
  num_classes = builder.info.features["label"].num_classes
  whole = {split: _read_whole(builder, split) for split in ("train", "test")}
  other = swapped_with(name, whole, num_classes)
  if other is not None:
    raise errors.InputError(
        f"{builder.data_dir} holds {other}'s data, not {name}'s (an older sam-edge "
        f"prepared it from files TFDS had extracted for {other}): delete that folder "
        f"and run again to prepare {name} afresh")
  train = _keep(whole["train"], mini_training_set_num_batches, batch_size)
  test = _keep(whole["test"], mini_test_set_num_batches, batch_size)
  return ImageData(
      train=train,
      test=test,
      mean_image=mean_image_of(train["image"]),
      num_classes=num_classes,
      fingerprint={"dataset": name, "version": str(builder.version),
                   "train_sha256": split_sha256(train),
                   "test_sha256": split_sha256(test)},
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
