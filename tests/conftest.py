"""Shared test set-up: CPU only, one persistent compilation cache, the `slow` marker, fixtures
over tests/helpers.py.

The cache folder (`.cache/jax` in the repository, or $JAX_COMPILATION_CACHE_DIR when set) is set
here, before jax is imported, in the environment, so that every subprocess a test starts
inherits it; compiles of every size are cached."""
import contextlib
import fcntl
import gzip
import os
import pathlib
import shutil

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parents[1] / ".cache" / "jax"))
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
# Tests compile many small programs and run each a few times: XLA's CPU back end at -O0 compiles
# them about a quarter faster (the whole suite's time), and every comparison a test makes is
# between runs compiled alike. Subprocesses inherit it (tests that set XLA_FLAGS append to it).
FAST_COMPILE = "--xla_backend_optimization_level=0"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402,F401  (after the environment is set)
import pytest  # noqa: E402

from sam_edge.cli import compilation_cache  # noqa: E402
from tests.helpers import (  # noqa: E402
  SHARED_DATA,
  mocked_tfds,
  tiny_sweep_args,
)

compilation_cache.configure(None, "tests")      # the folder above,
compilation_cache.install()                     # its entries written atomically


# Tests that share a fixture built once run on one pytest-xdist worker (`--dist loadgroup`), so
# that the fixture is built once and the other worker never waits for it: {fixture: group}.
GROUPS = {"real_tfds": "real_mnist", "tiny_sweep": "real_mnist", "swept": "swept",
          "two_checkpoints": "two_checkpoints", "resnet20_mnist": "resnet20_mnist",
          "text_on_one_device": "text_on_one_device", "uninterrupted": "uninterrupted"}


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: tests that start processes, prepare real datasets, "
                          "run whole experiments or compile large networks (the full lane)")


def pytest_itemcollected(item):
  """Puts a test that uses a fixture of GROUPS in that fixture's xdist group."""
  group = next((GROUPS[f] for f in getattr(item, "fixturenames", ()) if f in GROUPS), None)
  if group:
    item.add_marker(pytest.mark.xdist_group(group))


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


@contextlib.contextmanager
def _exclusive(lock: pathlib.Path):
  """Holds an exclusive lock on the file `lock` (the pytest-xdist workers wait for each other)."""
  with open(lock, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def built_once(tmp_path_factory, worker_id: str, name: str, build) -> pathlib.Path:
  """The folder `name`, built by `build(folder)` once per test session, whichever xdist worker
  asks first; the others wait for it and reuse it. A failed build is tried again by the next."""
  base = tmp_path_factory.getbasetemp()
  root = base if worker_id == "master" else base.parent          # shared by the workers
  folder, done = root / name, root / name / ".built"
  with _exclusive(root / f"{name}.lock"):
    if not done.exists():
      shutil.rmtree(folder, ignore_errors=True)
      folder.mkdir()
      build(folder)
      done.touch()
  return folder


def array_cache_of(tfds_dir: pathlib.Path, name: str) -> pathlib.Path:
  """Where the decoded splits of `name` are kept in `tfds_dir` (`data.array_cache`)."""
  from sam_edge.data import array_cache
  return pathlib.Path(array_cache.folder(name, str(tfds_dir)))


@pytest.fixture(scope="session")
def real_tfds(shared_data, tmp_path_factory, worker_id) -> pathlib.Path:
  """One TFDS data dir with real MNIST and Fashion-MNIST, prepared offline from ../shared/data
  once per session (and their decoded arrays beside them): pass it as --tfds_data_dir. MNIST is
  prepared by a one-step run of the entry point given --manual_dir, as a user prepares it.

  Fashion-MNIST is prepared with MNIST's files lying extracted in TFDS's shared extraction
  folder, `downloads/extracted/GZIP.<name>`, as TFDS leaves them when it prepares MNIST itself:
  the folder where an older sam-edge once built one dataset from the other's files
  (tests/test_datasets_offline.py reads what was prepared; the lines said are in `log.txt`)."""
  import image_classification as ic
  from sam_edge.cli import main as cli
  from sam_edge.data import image_specs, images

  def prepare(folder: pathlib.Path) -> None:
    cli.parse_flags(ic.FLAGS, [ic.PROG, f"--manual_dir={shared_data / 'mnist'}",
                               f"--tfds_data_dir={folder}", "--mlp_width=8", "--mlp_depth=2",
                               "--batch_size=50", "--mini_training_set_num_batches=1",
                               "--mini_test_set_num_batches=1", "--max_steps=1",
                               "--hessian_check_gap=0", "--raw_data_output=",
                               "--eigs_curve_output=", "--eigs_se_only_output=",
                               "--alignment_curve_output=", "--loss_curve_output="])
    assert ic.main([]) == 0, "the run that prepares MNIST failed"
    assert array_cache_of(folder, "mnist").is_dir()
    said = []
    extracted = folder / "downloads" / "extracted"
    extracted.mkdir(parents=True)
    for name in image_specs.expected_manual_files("mnist"):
      with gzip.open(shared_data / "mnist" / name) as f:
        (extracted / f"GZIP.{name}").write_bytes(f.read())
    images.load_image_dataset("fashion_mnist", batch_size=1, data_dir=str(folder),
                              manual_dir=str(shared_data / "fashion_mnist"), log=said.append)
    (folder / "log.txt").write_text("".join(f"{line}\n" for line in said))
  return built_once(tmp_path_factory, worker_id, "real_tfds", prepare)


@pytest.fixture(scope="session")
def tiny_sweep(real_tfds, tmp_path_factory, worker_id) -> pathlib.Path:
  """One finished sweep of tiny MLPs on real MNIST (`helpers.tiny_sweep_args`: width 4, 8 ×
  batch 50, 100 × seed 0, 1; 20 steps, measured every 10), each run folder with its pickle, PDFs,
  params file, checkpoint and done.json: the runs, pairs of seeds and the grid that compare,
  verify, landscapes, central flows and the metrics between runs read (read-only: a test that
  changes them works on a copy)."""
  from sam_edge import sweep

  def run(folder: pathlib.Path) -> None:
    code = sweep.main([f"--out={folder / 'wb'}", *tiny_sweep_args(real_tfds)])
    assert code == 0, f"the tiny sweep failed (exit code {code})"
  return built_once(tmp_path_factory, worker_id, "tiny_sweep", run) / "wb"


@pytest.fixture(scope="session")
def corpus(shared_data, tmp_path_factory):
  """A file holding the first 20,000 characters of tinyshakespeare (fast to train on)."""
  path = tmp_path_factory.mktemp("corpus") / "slice.txt"
  path.write_bytes((shared_data / "tinyshakespeare.txt").read_bytes()[:20000])
  return path


@pytest.fixture
def mock_mnist(tmp_path):
  """A TFDS data dir for MNIST, with TFDS mocked to NUM_MOCK random examples per split."""
  with mocked_tfds("mnist", tmp_path) as data_dir:
    yield data_dir
