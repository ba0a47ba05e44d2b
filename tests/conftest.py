"""Shared test set-up: CPU only, paths to ../shared data."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The read-only data folder beside the repository (../shared/data)."""
  if not SHARED_DATA.is_dir():
    pytest.skip("../shared/data is not beside the repository")
  return SHARED_DATA


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: tests that prepare real datasets or run whole experiments")
