"""The decoded splits kept beside TFDS's files (`data.array_cache`): written by the first read
through TFDS, read back equal without TensorFlow, ignored when damaged, optional when the folder
cannot be written."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow_datasets as tfds

from sam_edge.data import array_cache, image_specs, images
from tests.helpers import NUM_MOCK, REPO, write_mock_metadata


def load_mocked(data_dir, **kwargs) -> images.ImageData:
  with tfds.testing.mock_data(num_examples=NUM_MOCK, data_dir=str(data_dir),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    return images.load_image_dataset("mnist", batch_size=4, data_dir=str(data_dir), **kwargs)


def never_through_tfds(*args):
  raise AssertionError("read through TFDS")


def test_the_first_read_keeps_the_arrays_and_later_reads_equal_it(tmp_path, monkeypatch):
  write_mock_metadata("mnist", tmp_path)
  first = load_mocked(tmp_path, mini_training_set_num_batches=2)
  where = tmp_path / "mnist" / "3.0.1" / array_cache.FOLDER
  assert sorted(os.listdir(where)) == ["meta.json", "test_image.npy", "test_label.npy",
                                       "train_image.npy", "train_label.npy"]
  meta = json.loads((where / "meta.json").read_text())
  assert meta["splits"]["train"]["examples"] == NUM_MOCK and meta["num_classes"] == 10
  monkeypatch.setattr(images, "_read_through_tfds", never_through_tfds)
  again = images.load_image_dataset("mnist", batch_size=4, data_dir=str(tmp_path),
                                    mini_training_set_num_batches=2)
  assert again.fingerprint == first.fingerprint and again.num_classes == first.num_classes
  for split in ("train", "test"):
    for key in ("image", "label"):
      a, b = getattr(again, split)[key], getattr(first, split)[key]
      assert a.dtype == b.dtype
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(again.mean_image, first.mean_image)


def test_a_damaged_copy_is_read_again_through_tfds_and_rewritten(tmp_path):
  write_mock_metadata("mnist", tmp_path)
  first = load_mocked(tmp_path)
  labels = tmp_path / "mnist" / "3.0.1" / array_cache.FOLDER / "train_label.npy"
  data = bytearray(labels.read_bytes())
  data[-1] ^= 0x01                                      # one bit of the last label
  labels.write_bytes(bytes(data))
  assert array_cache.read("mnist", str(tmp_path)) is None
  again = load_mocked(tmp_path)
  assert again.fingerprint == first.fingerprint
  assert array_cache.read("mnist", str(tmp_path)) is not None        # rewritten whole


def test_a_data_dir_where_the_arrays_cannot_be_kept_still_loads(tmp_path):
  write_mock_metadata("mnist", tmp_path)
  blocker = tmp_path / "mnist" / "3.0.1" / array_cache.FOLDER
  blocker.write_text("a file where the folder would go")      # the rename into place fails
  data = load_mocked(tmp_path)
  assert len(data.train["label"]) == NUM_MOCK
  assert blocker.read_text() == "a file where the folder would go"
  assert [p.name for p in blocker.parent.iterdir() if p.name.startswith(".")] == []


def test_a_kept_dataset_loads_without_tensorflow(tmp_path):
  """A fresh process reads a kept dataset without importing TensorFlow or TFDS."""
  rng = np.random.default_rng(0)
  whole = {split: {"image": rng.integers(0, 256, (n, 28, 28, 1), np.uint8),
                   "label": rng.integers(0, 10, n).astype(np.int32)}
           for split, n in (("train", 30), ("test", 10))}
  (tmp_path / "fashion_mnist" / "3.0.1").mkdir(parents=True)       # as TFDS prepared it
  assert array_cache.write("fashion_mnist", str(tmp_path), whole, 10)
  code = ("import sys\nfrom sam_edge.data import images\n"
          f"d = images.load_image_dataset('fashion_mnist', batch_size=5, "
          f"data_dir={str(tmp_path)!r}, mini_training_set_num_batches=2)\n"
          "heavy = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]\n"
          "assert not heavy, heavy\n"
          "print(d.fingerprint['train_sha256'], len(d.train['label']), d.num_classes)\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  kept = {k: v[:10] for k, v in whole["train"].items()}
  assert done.stdout.split() == [array_cache.split_sha256(kept), "10", "10"]


def test_the_versions_are_those_tfds_builds():
  for name, spec in image_specs.SPECS.items():
    assert str(tfds.builder_cls(name).VERSION) == spec.version, name
