"""Image classification datasets read once, whole, into memory from TFDS.

Each split is read in a single batch (``batch_size=-1``) as numpy arrays:
``image`` uint8 ``[N, H, W, C]`` and ``label`` int32 ``[N]``. Optionally only
the first ``n * batch_size`` training / ``m * batch_size`` test examples are
kept ("mini" sets). The mean image is taken over the kept training examples,

  mean_image = (1 / N) sum_{i < N} image_i / 256,

which ``normalize`` subtracts from ``x / 256`` (``--normalize=mean_image``, the default).

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

The first read through TFDS keeps the decoded splits as NumPy arrays beside
TFDS's files (``array_cache``); later reads load those, without TensorFlow.
"""

import dataclasses
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from sam_edge import errors
from sam_edge.data import array_cache
from sam_edge.data.array_cache import split_sha256
from sam_edge.data.image_specs import (
  SPECS,
  check_supported,
  expected_manual_files,
  in_memory_problem,
  spec,
  swapped_with,
)

if TYPE_CHECKING:
  import tensorflow_datasets as tfds



PROBE_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A whole image dataset in host memory.

  ``train`` is {"image": uint8 [N, H, W, C], "label": int32 [N]} and ``test``
  {"image": uint8 [M, H, W, C], "label": int32 [M]}; ``mean_image`` is float32 [H, W, C], the
  mean of ``train["image"] / 256``; ``num_classes`` is the number of label classes; and
  ``fingerprint`` {"dataset", "version", "train_sha256", "test_sha256"} holds the TFDS name and
  version, and ``split_sha256`` of the kept splits.
  """

  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  mean_image: np.ndarray
  num_classes: int
  fingerprint: dict[str, str] = dataclasses.field(default_factory=dict)


def download_urls(name: str) -> tuple[str, ...]:
  """The URLs TFDS 4.9.10 downloads to prepare ``name`` (sorted)."""
  spec(name)
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

  Raises InputError if ``manual_dir`` lacks some of the expected files.
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


def prepare(builder: "tfds.core.DatasetBuilder", name: str,
             manual_dir: str | None, probe_timeout: float,
             log: Callable[[str], None]) -> None:
  """Prepares ``name`` into ``builder.data_dir``, extracting into a temporary
  folder of its own (see the module doc); fails fast when offline."""
  import tensorflow_datasets as tfds
  source = _local_source(builder, name, manual_dir)
  if source is None and getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
    raise errors.InputError(
        f"{name} is not prepared in {builder.data_dir}, and TFDS cannot download it: put "
        f"{' and '.join(expected_manual_files(name))} into a folder and pass it as "
        "--manual_dir=FOLDER")
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

  Returns the dataset ``name`` (one of ``SUPPORTED``), with the mean image of the kept training
  examples and the fingerprint of the kept splits. ``batch_size`` is the training batch size, the
  unit of the mini-set sizes: with ``mini_training_set_num_batches`` n (or
  ``mini_test_set_num_batches`` m) set, only the first ``min(N, n * batch_size)`` training (or
  ``min(M, m * batch_size)`` test) examples are kept. ``data_dir`` is the TFDS data directory
  (TFDS's default when None). ``manual_dir``, when given, is a directory holding
  ``expected_manual_files(name)``, from which preparation reads the downloads instead of the
  network. ``probe_timeout`` is the seconds to wait for each download host when the dataset must
  be downloaded, and ``log`` prints the one line saying a preparation is happening.

  Raises ValueError for an unsupported name, or a batch size or mini-set size below 1, and
  ``errors.InputError`` for a dataset too large for memory (``image_specs.in_memory_problem``),
  when the data cannot be had (not prepared, no manual_dir and the download hosts unreachable; a
  manual_dir lacking files) or the prepared folder holds another dataset's data.
  """
  if in_memory_problem(name):
    raise errors.InputError(in_memory_problem(name))
  check_supported(name)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  check_num_batches(mini_training_set_num_batches)
  check_num_batches(mini_test_set_num_batches)
  cached = array_cache.read(name, data_dir)
  whole, num_classes = cached if cached is not None else _read_through_tfds(
      name, data_dir, manual_dir, probe_timeout, log)
  train = _keep(whole["train"], mini_training_set_num_batches, batch_size)
  test = _keep(whole["test"], mini_test_set_num_batches, batch_size)
  return ImageData(
      train=train,
      test=test,
      mean_image=mean_image_of(train["image"]),
      num_classes=num_classes,
      fingerprint={"dataset": name, "version": SPECS[name].version,
                   "train_sha256": split_sha256(train),
                   "test_sha256": split_sha256(test)},
  )


def _read_through_tfds(name: str, data_dir: str | None, manual_dir: str | None,
                       probe_timeout: float, log: Callable[[str], None]
                       ) -> tuple[dict[str, dict[str, np.ndarray]], int]:
  """({split: arrays}, num_classes) read whole through TFDS (preparing the dataset first if
  needed), checked not to be the other dataset's data, then kept as NumPy arrays beside TFDS's
  files for the next runs (`array_cache`)."""
  import tensorflow_datasets as tfds  # here, not at import: it loads TensorFlow (slow, noisy)
  tfds.disable_progress_bar()
  builder = tfds.builder(name, data_dir=data_dir)
  if not os.path.exists(os.fspath(builder.data_path)):
    prepare(builder, name, manual_dir, probe_timeout, log)
  elif not builder.is_prepared():          # TFDS would "reuse" it, then fail to read it.
    raise errors.InputError(
        f"{builder.data_path} is not a complete {name} preparation (no dataset_info.json "
        "or features.json): delete that folder and run again")
  num_classes = builder.info.features["label"].num_classes
  whole = {"train": _read_whole(builder, "train"),
           "test": _read_whole(builder, SPECS[name].test_split)}
  other = swapped_with(name, whole, num_classes)
  if other is not None:
    raise errors.InputError(
        f"{builder.data_dir} holds {other}'s data, not {name}'s (an older sam-edge "
        f"prepared it from files TFDS had extracted for {other}): delete that folder "
        f"and run again to prepare {name} afresh")
  array_cache.write(name, data_dir, whole, num_classes)
  return whole, num_classes
