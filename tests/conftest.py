"""Shared test set-up: CPU only, paths to ../shared data."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

import tensorflow_datasets as tfds  # noqa: E402  (after JAX_PLATFORMS is set)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The read-only data folder beside the repository (../shared/data)."""
  if not SHARED_DATA.is_dir():
    pytest.skip("../shared/data is not beside the repository")
  return SHARED_DATA


@pytest.fixture(scope="session")
def corpus(shared_data, tmp_path_factory) -> pathlib.Path:
  """A file holding the first 20,000 characters of tinyshakespeare (fast to train on)."""
  path = tmp_path_factory.mktemp("corpus") / "slice.txt"
  path.write_bytes((shared_data / "tinyshakespeare.txt").read_bytes()[:20000])
  return path


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: tests that prepare real datasets or run whole experiments")


NUM_MOCK = 24


def write_mock_metadata(name: str, data_dir: pathlib.Path) -> None:
  """Writes `name`'s dataset_info.json with NUM_MOCK-example train and test splits (without
  split sizes a `batch_size=-1` read aborts TensorFlow; see test_images.py)."""
  builder = tfds.builder(name, data_dir=str(data_dir))
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[NUM_MOCK], num_bytes=0)
      for split in ("train", "test")]))
  pathlib.Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


@pytest.fixture
def mock_mnist(tmp_path):
  """A TFDS data dir for MNIST, with TFDS mocked to NUM_MOCK random examples per split."""
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  write_mock_metadata("mnist", data_dir)
  with tfds.testing.mock_data(num_examples=NUM_MOCK, data_dir=str(data_dir),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    yield data_dir


