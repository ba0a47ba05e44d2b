"""Shared test set-up: CPU only, the `slow` marker, fixtures over tests/helpers.py."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after JAX_PLATFORMS is set)
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from tests.helpers import NUM_MOCK, SHARED_DATA, write_mock_metadata  # noqa: E402


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: tests that start processes, prepare real datasets, "
                          "run whole experiments or compile large networks (the full lane)")


@pytest.fixture
def x64():
  """float64 inside the test (`pytestmark = pytest.mark.usefixtures("x64")`)."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope="session")
def shared_data():
  """The read-only data folder beside the repository (../shared/data)."""
  if not SHARED_DATA.is_dir():
    pytest.skip("../shared/data is not beside the repository")
  return SHARED_DATA


@pytest.fixture(scope="session")
def corpus(shared_data, tmp_path_factory):
  """A file holding the first 20,000 characters of tinyshakespeare (fast to train on)."""
  path = tmp_path_factory.mktemp("corpus") / "slice.txt"
  path.write_bytes((shared_data / "tinyshakespeare.txt").read_bytes()[:20000])
  return path


@pytest.fixture
def mock_mnist(tmp_path):
  """A TFDS data dir for MNIST, with TFDS mocked to NUM_MOCK random examples per split."""
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  write_mock_metadata("mnist", data_dir)
  with tfds.testing.mock_data(num_examples=NUM_MOCK, data_dir=str(data_dir),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    yield data_dir
