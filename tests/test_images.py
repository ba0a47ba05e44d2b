"""Tests for sam_edge.data.images: TFDS loading (mocked and real MNIST).

The real-MNIST test reads MNIST prepared offline from ../shared/data/mnist
once per session (the shared `real_tfds` folder) and is marked ``slow``;
``-m "not slow"`` leaves only the fast mocked tests.
"""

import gzip
import hashlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from sam_edge.data import image_specs, images, normalize

NUM_MOCK = 20


def expected_mean(images_uint8: np.ndarray) -> np.ndarray:
  """mean_i image_i / 256 in float64."""
  return images_uint8.astype(np.float64).mean(axis=0) / 256


def write_mock_metadata(name: str, data_dir: pathlib.Path) -> None:
  """Writes ``name``'s dataset_info.json with NUM_MOCK-example splits.

  Without split sizes, ``as_dataset(batch_size=-1)`` batches by
  ``sys.maxsize`` and TensorFlow aborts the process (``std::length_error:
  vector::reserve``), so ``mock_data``'s default (no metadata) can't be used.
  """
  builder = tfds.builder(name, data_dir=str(data_dir))
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[NUM_MOCK], num_bytes=0)
      for split in ("train", "test")
  ]))
  pathlib.Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


def load_mocked(name: str, tmp_path: pathlib.Path,
                **kwargs) -> images.ImageData:
  """``load_image_dataset`` with TFDS mocked to ``NUM_MOCK`` random examples.

  Mocked train and test splits hold the same deterministic examples.
  """
  write_mock_metadata(name, tmp_path)
  with tfds.testing.mock_data(num_examples=NUM_MOCK, data_dir=str(tmp_path),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    return images.load_image_dataset(name, data_dir=str(tmp_path), **kwargs)


def read_idx(path: pathlib.Path, header_bytes: int) -> np.ndarray:
  """The uint8 payload of a gzipped IDX file."""
  with gzip.open(path, "rb") as f:
    return np.frombuffer(f.read()[header_bytes:], np.uint8)


def row_keys(x: np.ndarray) -> np.ndarray:
  """Sorted per-example keys sum_j j^2 x_j, to compare two orderings.

  Exact in float64 for MNIST: 255 * sum_{j <= 784} j^2 < 2^53.
  """
  flat = x.reshape(len(x), -1).astype(np.float64)
  weights = np.arange(1, flat.shape[1] + 1, dtype=np.float64)**2
  return np.sort(flat @ weights)


def sha256_of(split: dict[str, np.ndarray]) -> str:
  """sha256 of the image bytes followed by the int32 little-endian label bytes."""
  return hashlib.sha256(split["image"].tobytes()
                        + split["label"].astype("<i4").tobytes()).hexdigest()


@pytest.mark.parametrize("name, shape, num_classes, version", [
    ("mnist", (28, 28, 1), 10, "3.0.1"),
    ("fashion_mnist", (28, 28, 1), 10, "3.0.1"),
    ("cifar10", (32, 32, 3), 10, "3.0.2"),
    ("cifar100", (32, 32, 3), 100, "3.0.2"),
    ("svhn_cropped", (32, 32, 3), 10, "3.1.0"),
])
def test_mocked_full(name, shape, num_classes, version, tmp_path):
  data = load_mocked(name, tmp_path, batch_size=4)
  assert data.num_classes == num_classes == image_specs.SPECS[name].num_classes
  assert image_specs.SPECS[name].image_shape == shape
  for split in (data.train, data.test):
    assert set(split) == {"image", "label"}
    assert split["image"].shape == (NUM_MOCK, *shape)
    assert split["image"].dtype == np.uint8
    assert split["label"].shape == (NUM_MOCK,)
    assert split["label"].dtype == np.int32
    assert ((split["label"] >= 0) & (split["label"] < num_classes)).all()
  assert data.mean_image.shape == shape
  assert data.mean_image.dtype == np.float32
  np.testing.assert_allclose(data.mean_image,
                             expected_mean(data.train["image"]), rtol=1e-6)
  assert data.fingerprint == {"dataset": name, "version": version,
                              "train_sha256": sha256_of(data.train),
                              "test_sha256": sha256_of(data.test)}


def test_fingerprint_is_of_the_kept_examples(tmp_path):
  full = load_mocked("cifar100", tmp_path, batch_size=4)
  mini = load_mocked("cifar100", tmp_path, batch_size=4,
                     mini_training_set_num_batches=2)
  assert mini.fingerprint["train_sha256"] == sha256_of(
      {k: v[:8] for k, v in full.train.items()})
  assert mini.fingerprint["train_sha256"] != full.fingerprint["train_sha256"]
  assert mini.fingerprint["test_sha256"] == full.fingerprint["test_sha256"]


def test_mocked_mini_sets(tmp_path):
  full = load_mocked("mnist", tmp_path, batch_size=4)
  mini = load_mocked("mnist", tmp_path, batch_size=4,
                     mini_training_set_num_batches=2,
                     mini_test_set_num_batches=3)
  assert len(mini.train["image"]) == len(mini.train["label"]) == 8
  assert len(mini.test["image"]) == len(mini.test["label"]) == 12
  # Mocked examples are deterministic: the mini sets are prefixes.
  for key in ("image", "label"):
    np.testing.assert_array_equal(mini.train[key], full.train[key][:8])
    np.testing.assert_array_equal(mini.test[key], full.test[key][:12])
  # The mean is over the kept training examples only.
  np.testing.assert_allclose(mini.mean_image,
                             expected_mean(full.train["image"][:8]), rtol=1e-6)
  assert not np.allclose(mini.mean_image, full.mean_image)


def test_mocked_mini_sets_never_exceed_the_data(tmp_path):
  data = load_mocked("cifar10", tmp_path, batch_size=8,
                     mini_training_set_num_batches=100,
                     mini_test_set_num_batches=3)
  assert len(data.train["label"]) == NUM_MOCK
  assert len(data.test["label"]) == NUM_MOCK  # 3 * 8 = 24 > 20.


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=4, mini_training_set_num_batches=0), "num_batches"),
    (dict(batch_size=4, mini_test_set_num_batches=-1), "num_batches"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_sizes_fail_before_preparing(kwargs, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    images.load_image_dataset("mnist", data_dir=str(tmp_path), **kwargs)
  assert not any(tmp_path.iterdir())


def test_num_kept():
  assert images.num_kept(100, None, 8) == 100
  assert images.num_kept(100, 3, 8) == 24
  assert images.num_kept(100, 13, 8) == 100


@pytest.mark.parametrize("name", ["cifar10_1", "MNIST", "imagenet", "svhn"])
def test_unknown_dataset(name):
  with pytest.raises(ValueError, match=f"'{name}'.*mnist.*fashion_mnist"):
    images.load_image_dataset(name, batch_size=8)
  with pytest.raises(ValueError, match=f"'{name}'.*cifar10"):
    image_specs.expected_manual_files(name)


def test_expected_manual_files():
  assert image_specs.expected_manual_files("mnist") == (
      "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
  assert (image_specs.expected_manual_files("fashion_mnist")
          == image_specs.expected_manual_files("mnist"))
  assert image_specs.expected_manual_files("cifar10") == ("cifar-10-binary.tar.gz",)
  assert image_specs.expected_manual_files("cifar100") == ("cifar-100-binary.tar.gz",)
  assert set(image_specs.expected_manual_files("svhn_cropped")) == {
      "train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"}


@pytest.mark.parametrize("name", image_specs.SUPPORTED)
def test_specs_match_the_tfds_builders(name):
  builder = tfds.builder(name)           # No data needed: features come from the code.
  assert image_specs.SPECS[name].num_classes == builder.info.features["label"].num_classes
  assert image_specs.SPECS[name].image_shape == builder.info.features["image"].shape
  assert image_specs.TRAIN_SIZES[name] == image_specs.SPECS[name].train_size
  assert image_specs.SPECS[name].version == str(builder.version)
  assert image_specs.SUPPORTED == ("mnist", "fashion_mnist", "cifar10", "cifar100",
                                   "svhn_cropped")
  assert tuple(image_specs.STREAMED) == ("imagenet2012",)


@pytest.mark.parametrize("name", image_specs.SUPPORTED)
def test_download_urls_are_tfds_urls(name):
  urls = images.download_urls(name)
  assert set(urls) == set(tfds.builder_cls(name).url_infos)
  assert ({url.rsplit("/", 1)[1] for url in urls}
          == set(image_specs.expected_manual_files(name)))


@pytest.mark.parametrize("name", image_specs.SUPPORTED)
def test_expected_manual_files_match_tfds_checksums(name):
  # TFDS looks for manual_dir / url_info.filename for every URL it downloads. ImageNet's
  # checksums name no file (TFDS never downloads it): its builder reads manual_dir / the last
  # part of each URL (tests/test_imagenet.py).
  tfds_names = {info.filename or url.rsplit("/", 1)[1]
                for url, info in tfds.builder_cls(name).url_infos.items()}
  assert set(image_specs.expected_manual_files(name)) == tfds_names


def test_shared_mnist_has_expected_files(shared_data):
  for name in ("mnist", "fashion_mnist"):
    for file_name in image_specs.expected_manual_files(name):
      assert (shared_data / name / file_name).is_file()


def test_mean_image_normalisation_is_x_over_256_minus_the_mean_in_jit():
  rng = np.random.default_rng(0)
  batch = rng.integers(0, 256, size=(5, 4, 3, 2), dtype=np.uint8)
  mean = rng.random((4, 3, 2)).astype(np.float32)
  device_batch = jax.device_put(batch)
  assert device_batch.dtype == jnp.uint8
  preprocess = normalize.of("mean_image", batch, mean)
  out = jax.jit(preprocess)(device_batch)
  assert out.dtype == jnp.float32 and out.shape == batch.shape
  # Bytes for bytes the reference's float32 x/256 − mean (IEEE division and subtraction).
  np.testing.assert_array_equal(out, batch.astype(np.float32) / np.float32(256) - mean)
  # Values stay exact multiples of 1/256 before centring (no uint8 overflow).
  zero_mean = jax.jit(normalize.of("mean_image", batch, np.zeros_like(mean)))(device_batch)
  np.testing.assert_array_equal(zero_mean * 256, batch.astype(np.float32))
  np.testing.assert_array_equal(preprocess.centre(), np.round(mean * 256).astype(np.uint8))


def test_per_channel_normalisation_uses_the_training_pixels_moments():
  rng = np.random.default_rng(1)
  train = rng.integers(0, 256, size=(10_000, 2, 3, 3), dtype=np.uint8)   # more than CHUNK
  train[..., 2] //= 4                                       # channels of different spreads
  mean, std = normalize.channel_moments(train)
  pixels = train.reshape(-1, 3).astype(np.float64) / 255
  np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-10)
  preprocess = normalize.of("per_channel", train, images.mean_image_of(train))
  out = np.asarray(jax.jit(preprocess)(train[:7]))
  np.testing.assert_allclose(out, (train[:7] / 255 - mean) / std, rtol=1e-5, atol=1e-5)
  whole = np.asarray(jax.jit(preprocess)(train)).reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(whole.mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(whole.std(axis=0), 1, atol=1e-5)
  # The centre, the cut-out fill, maps to 0 up to its rounding to uint8.
  centre = preprocess.centre()
  np.testing.assert_array_equal(centre, np.round(255 * mean).astype(np.uint8))
  assert np.all(np.abs(np.asarray(preprocess(centre))) <= 0.5 / 255 / std)
  constant = np.full((4, 2, 2, 1), 9, np.uint8)              # σ = 0: centred only
  np.testing.assert_allclose(normalize.of("per_channel", constant, None)(constant), 0)


def test_no_normalisation_is_x_over_255():
  batch = np.array([0, 1, 128, 255], np.uint8).reshape(1, 2, 2, 1)
  preprocess = normalize.of("none", batch, None)
  np.testing.assert_array_equal(jax.jit(preprocess)(batch), batch.astype(np.float32) / 255)
  np.testing.assert_array_equal(preprocess.centre(), [0])
  with pytest.raises(ValueError, match="zscore"):
    normalize.of("zscore", batch, None)


@pytest.mark.slow
def test_real_mnist(shared_data, real_tfds):
  """MNIST as read from the shared prepared folder (its decoded arrays, `array_cache`), equal to
  TFDS's own read of that folder, and to the IDX files' examples."""
  manual_dir = shared_data / "mnist"
  data = images.load_image_dataset("mnist", batch_size=128, data_dir=str(real_tfds))
  builder = tfds.builder("mnist", data_dir=str(real_tfds))
  for split, kept in (("train", data.train), ("test", data.test)):
    through_tfds = images._read_whole(builder, split)
    for key in ("image", "label"):
      np.testing.assert_array_equal(kept[key], through_tfds[key])
  assert data.train["image"].shape == (image_specs.SPECS["mnist"].train_size, 28, 28, 1)
  assert data.test["image"].shape == (image_specs.SPECS["mnist"].test_size, 28, 28, 1)
  assert data.train["image"].shape == (60_000, 28, 28, 1)
  assert data.test["image"].shape == (10_000, 28, 28, 1)
  assert data.train["label"].shape == (60_000,)
  assert data.test["label"].shape == (10_000,)
  assert data.train["label"].dtype == data.test["label"].dtype == np.int32
  assert data.num_classes == 10
  # TFDS stores examples in its own deterministic (hash-shuffled) order, not
  # the IDX order (whose first training labels are 5, 0, 4, 1, 9).
  np.testing.assert_array_equal(data.train["label"][:10],
                                [4, 1, 0, 7, 8, 1, 2, 7, 1, 6])
  np.testing.assert_array_equal(data.test["label"][:10],
                                [2, 0, 4, 8, 7, 6, 0, 6, 3, 1])
  # Same examples as the IDX files, in some order.
  for split, prefix in ((data.train, "train"), (data.test, "t10k")):
    idx_labels = read_idx(manual_dir / f"{prefix}-labels-idx1-ubyte.gz", 8)
    idx_images = read_idx(manual_dir / f"{prefix}-images-idx3-ubyte.gz", 16)
    idx_images = idx_images.reshape(-1, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(split["label"], minlength=10),
                                  np.bincount(idx_labels, minlength=10))
    np.testing.assert_array_equal(row_keys(split["image"]),
                                  row_keys(idx_images))
    if prefix == "train":
      np.testing.assert_allclose(data.mean_image, expected_mean(idx_images),
                                 rtol=1e-6, atol=1e-7)
  # MNIST's mean pixel, 0.1307 on [0, 1], is 0.1307 * 255 / 256 here.
  assert abs(float(data.mean_image.mean()) - 0.1307 * 255 / 256) < 1e-4
