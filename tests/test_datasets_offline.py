"""Datasets that never silently swap, and fast one-line failures without network or files.

* Offline: an unprepared dataset with no manual_dir fails at once with an InputError naming the
  URLs and --manual_dir, without TFDS ever trying to download (the probe is pointed at a closed
  local port, so the test does not depend on this machine's network).
* MNIST / Fashion-MNIST: TFDS 4.9.10 reuses `<data_dir>/downloads/extracted/GZIP.<file name>`
  across datasets, so a data dir that had MNIST's files extracted prepared "fashion_mnist" from
  them. One slow test builds such a poisoned data dir with TFDS's own call and checks that the
  loader refuses it in one line; the other checks that the loader's own preparation gives
  Fashion-MNIST although MNIST's extracted files are there (the shared `real_tfds` folder is
  prepared that way, once per session).
"""

import gzip
import http.server
import pathlib
import socket
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sam_edge import errors
from sam_edge.data import image_specs, images


def read_idx(path: pathlib.Path, header_bytes: int) -> np.ndarray:
  """The uint8 payload of a gzipped IDX file."""
  with gzip.open(path, "rb") as f:
    return np.frombuffer(f.read()[header_bytes:], np.uint8)


def idx_splits(folder: pathlib.Path) -> dict[str, dict[str, np.ndarray]]:
  """{"train"/"test": {"image" [N, 28, 28, 1], "label" [N]}} straight from the IDX files."""
  return {split: {"image": read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 16
                                    ).reshape(-1, 28, 28, 1),
                  "label": read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 8
                                    ).astype(np.int32)}
          for split, prefix in (("train", "train"), ("test", "t10k"))}


@pytest.fixture
def closed_port_url() -> str:
  """An http URL on localhost where nothing listens (connection refused at once)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/file"


@pytest.fixture
def no_download(monkeypatch):
  """Makes any TFDS preparation fail the test (today's code would retry for minutes)."""
  def refuse(self, *args, **kwargs):
    raise AssertionError(f"TFDS download_and_prepare({self.name}) was called")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn_cropped", "mnist"])
def test_offline_without_data_is_one_line_at_once(name, tmp_path, monkeypatch, closed_port_url,
                                                  no_download):
  monkeypatch.setattr(images, "probe_urls", lambda _: (closed_port_url,))
  lines = []
  with pytest.raises(errors.InputError) as e:
    images.load_image_dataset(name, batch_size=8, data_dir=str(tmp_path), log=lines.append)
  message = str(e.value)
  assert "\n" not in message
  assert f"{name} is not prepared in {tmp_path}" in message
  assert "127.0.0.1" in message                                  # Why: the probe failed.
  for url in tfds.builder_cls(name).url_infos:                   # What to download ...
    assert url in message
  assert message.endswith("into a folder and pass it as --manual_dir=FOLDER")  # ... and how.
  assert lines == []
  assert not (tmp_path / name).exists()                          # Nothing half-prepared.


def test_cifar10_message(tmp_path, monkeypatch, closed_port_url, no_download):
  monkeypatch.setattr(images, "probe_urls", lambda _: (closed_port_url,))
  with pytest.raises(errors.InputError, match=(
      r"download https://www\.cs\.toronto\.edu/~kriz/cifar-10-binary\.tar\.gz into a folder")):
    images.load_image_dataset("cifar10", batch_size=8, data_dir=str(tmp_path))


def test_unreachable_closed_port(closed_port_url):
  reason = images.unreachable([closed_port_url], timeout=2.0)
  assert reason is not None and reason.startswith("127.0.0.1:") and "\n" not in reason


def test_unreachable_host_that_never_answers():
  with socket.socket() as server:          # Accepts connections (backlog) but never replies.
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    reason = images.unreachable([f"http://127.0.0.1:{port}/x"], timeout=0.3)
  assert reason is not None and f"127.0.0.1:{port}" in reason


class _Handler(http.server.BaseHTTPRequestHandler):
  """Answers HEAD /ok with 200 and anything else with 404."""

  def do_HEAD(self):  # noqa: N802 (http.server's name)
    self.send_response(200 if self.path == "/ok" else 404)
    self.end_headers()

  def log_message(self, *args):
    pass


def test_reachable_host_with_any_answer():
  server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    assert images.unreachable([f"{base}/ok"], timeout=5.0) is None
    assert images.unreachable([f"{base}/missing"], timeout=5.0) is None   # 404 is an answer.
  finally:
    server.shutdown()
    server.server_close()


def test_manual_dir_lacking_files(tmp_path, no_download):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "train_32x32.mat").write_bytes(b"")
  with pytest.raises(errors.InputError, match=(
      f"--manual_dir={manual} lacks the svhn_cropped files test_32x32.mat, extra_32x32.mat")):
    images.load_image_dataset("svhn_cropped", batch_size=8, data_dir=str(tmp_path / "tfds"),
                              manual_dir=str(manual))


def test_tfds_default_manual_folder_counts_as_local(tmp_path, monkeypatch):
  # Files in <data_dir>/downloads/manual are what TFDS reads without --manual_dir: no probe.
  manual = tmp_path / "downloads" / "manual"
  manual.mkdir(parents=True)
  (manual / "cifar-100-binary.tar.gz").write_bytes(b"")
  calls = []
  monkeypatch.setattr(images, "unreachable", lambda *a: calls.append(a))
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda self, download_config: calls.append(download_config))
  class Prepared(Exception):
    pass

  def stop(*args):
    raise Prepared
  monkeypatch.setattr(images, "_read_whole", stop)
  lines = []
  with pytest.raises(Prepared):
    images.load_image_dataset("cifar100", batch_size=8, data_dir=str(tmp_path),
                              log=lines.append)
  (config,) = calls
  assert str(config.manual_dir) == str(manual) and not config.try_download_gcs
  # Extraction goes to a folder of its own, deleted afterwards.
  assert pathlib.Path(config.extract_dir).parent == tmp_path / "downloads"
  assert not pathlib.Path(config.extract_dir).exists()
  assert lines == [f"preparing cifar100 from {manual} into {tmp_path}/cifar100/3.0.2 "
                   "(once; later runs read it from there)"]


def test_incomplete_preparation_is_refused(tmp_path, no_download):
  (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
  with pytest.raises(errors.InputError, match=r"cifar10/3\.0\.2 is not a complete cifar10 "
                     r"preparation .*delete that folder"):
    images.load_image_dataset("cifar10", batch_size=8, data_dir=str(tmp_path))


def test_signatures_are_those_of_the_idx_files(shared_data):
  for name in ("mnist", "fashion_mnist"):
    splits = idx_splits(shared_data / name)
    for split in ("train", "test"):
      assert image_specs.signature(splits[split], 10) == image_specs.SIGNATURES[name][split]


def test_swapped_with_names_the_other_dataset(shared_data):
  mnist = idx_splits(shared_data / "mnist")
  fashion = idx_splits(shared_data / "fashion_mnist")
  assert image_specs.swapped_with("fashion_mnist", mnist, 10) == "mnist"
  assert image_specs.swapped_with("mnist", fashion, 10) == "fashion_mnist"
  assert image_specs.swapped_with("mnist", mnist, 10) is None
  assert image_specs.swapped_with("fashion_mnist", fashion, 10) is None
  # Half-swapped (images of one, labels of the other) is caught too.
  mixed = {s: {"image": fashion[s]["image"], "label": mnist[s]["label"]} for s in mnist}
  assert image_specs.swapped_with("fashion_mnist", mixed, 10) == "mnist"
  # Data of unknown provenance (e.g. mocked) is not accused.
  rng = np.random.default_rng(0)
  random = {s: {"image": rng.integers(0, 256, (24, 28, 28, 1), np.uint8),
                "label": rng.integers(0, 10, 24).astype(np.int32)} for s in mnist}
  assert image_specs.swapped_with("mnist", random, 10) is None


@pytest.mark.slow
def test_a_folder_prepared_from_the_other_datasets_files_is_refused(shared_data, tmp_path):
  data_dir = tmp_path / "tfds"
  # A data dir where MNIST was prepared from --manual_dir before: TFDS left MNIST's IDX files
  # extracted (gunzipped) under the bare names in its shared extraction folder.
  extracted = data_dir / "downloads" / "extracted"
  extracted.mkdir(parents=True)
  for file_name in image_specs.expected_manual_files("mnist"):
    with gzip.open(shared_data / "mnist" / file_name) as f:
      (extracted / f"GZIP.{file_name}").write_bytes(f.read())
  # Before the fix, "fashion_mnist" was prepared the way TFDS does by default, from those.
  tfds.builder("fashion_mnist", data_dir=str(data_dir)).download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=shared_data / "fashion_mnist"))
  poisoned = data_dir / "fashion_mnist" / "3.0.1"
  # The loader refuses that folder in one line that says what to delete.
  with pytest.raises(errors.InputError) as e:
    images.load_image_dataset("fashion_mnist", batch_size=500, data_dir=str(data_dir),
                              manual_dir=str(shared_data / "fashion_mnist"))
  assert str(e.value).startswith(f"{poisoned} holds mnist's data, not fashion_mnist's")
  assert "delete that folder" in str(e.value) and "\n" not in str(e.value)
  assert not (poisoned / "sam_edge_arrays").exists()           # nothing of it is kept either


@pytest.mark.slow
def test_mnist_and_fashion_mnist_never_swap(shared_data, real_tfds):
  """The shared data folder prepared Fashion-MNIST with MNIST's extracted files still in TFDS's
  extraction folder (conftest.real_tfds): what it holds is Fashion-MNIST's data."""
  said = (real_tfds / "log.txt").read_text()
  folder = real_tfds / "fashion_mnist" / "3.0.1"
  assert said.count(f"preparing fashion_mnist from --manual_dir={shared_data}/fashion_mnist "
                    f"into {folder}") == 1
  assert "Downloading and preparing" not in said and "Unknown size" not in said
  assert sorted(p.name for p in (real_tfds / "downloads").iterdir()) == ["extracted"]
  assert len(list((real_tfds / "downloads" / "extracted").iterdir())) == 4   # still there
  builder = tfds.builder("fashion_mnist", data_dir=str(real_tfds))
  prepared = {split: images._read_whole(builder, split) for split in ("train", "test")}
  data = images.load_image_dataset("fashion_mnist", batch_size=500, data_dir=str(real_tfds))
  for split, whole in (("train", data.train), ("test", data.test)):
    assert image_specs.signature(whole, 10) == image_specs.SIGNATURES["fashion_mnist"][split]
    assert image_specs.signature(prepared[split], 10) == (
        image_specs.SIGNATURES["fashion_mnist"][split])
  assert data.fingerprint["train_sha256"] == images.split_sha256(data.train)
  # Fashion-MNIST's mean pixel (72.9 on 0..255; MNIST's is 33.3).
  fashion = idx_splits(shared_data / "fashion_mnist")
  assert float(data.mean_image.mean()) * 256 == pytest.approx(
      fashion["train"]["image"].mean(), rel=1e-5)
