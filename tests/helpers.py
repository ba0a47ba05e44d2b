"""What several test modules share: paths, the tiny transformer's flags, mocked TFDS metadata,
and dense references (Hessians, matrices with known spectra). Fixtures live in conftest.py and
use these; test modules import from here, never from conftest."""

import contextlib
import pathlib
import pickletools
from typing import Optional

import flax.linen as nn
import jax
import numpy as np
import tensorflow_datasets as tfds
from jax.flatten_util import ravel_pytree

from sam_edge.data import image_specs
from sam_edge.models import resnet

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NUM_MOCK = 24

# The tiny transformer (1 layer, width 32, windows of 17 characters, batch 8, Lanczos of 8 steps):
# a step or a measurement takes milliseconds. Every test's tiny transformer run uses these flags
# (and adds only what it tests), so that runs compile the same programs once.
TINY_TRANSFORMER = ["--num_layers=1", "--model_size=32", "--num_heads=2", "--key_size=16",
                    "--sequence_length=16", "--batch_size=8", "--lanczos_max_steps=8"]

# The SAM papers' CIFAR recipe, shrunk (ResNet-20 with BatchNorm, 4 images, 4 steps), shared by the
# tests of BatchNorm runs (recipes, resumption) so that they compile its programs once;
# RESNET_MEASURED adds its measurements.
RESNET_RECIPE = ["--nn_architecture=ResNet20", "--batch_size=4", "--optimizer=momentum",
                 "--weight_decay=5e-4", "--rho=0.05", "--step_size=0.05", "--augment=flip_crop",
                 "--label_noise=0.25", "--label_smoothing=0.1", "--lr_schedule=cosine",
                 "--warmup_steps=1", "--max_steps=4", "--eval_every_steps=2"]
RESNET_MEASURED = ["--measure_every_steps=1", "--lanczos_max_steps=4"]


class TinyBatchNormNet(nn.Module):
  """The smallest network with what BatchNorm brings to the residual networks (examples coupled
  through the batch's statistics, running statistics as nested state), built from their own
  layers: a stem (conv 3x3 of 4 channels → BatchNorm → ReLU), one of ResNet-20's basic blocks
  (two BatchNorms in a sub-module), global average pool → dense. It compiles in a fraction of
  ResNet-20's time (`stateful` drives it as it drives the ResNets)."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.relu(resnet.batch_norm(train, "stem_bn")(resnet.conv3x3(4, 1, "stem_conv")(x)))
    h = resnet.BasicBlock(4, 1, name="block")(h, train)
    return nn.Dense(self.num_classes, name="head")(resnet.global_average_pool(h))


def tiny_sweep_args(tfds_dir) -> list[str]:
  """The sweep of the `tiny_sweep` fixture: its own flags, `--`, the entry point's."""
  return ["--phase_axes=mlp_width,batch_size", "--", "image_classification",
          f"--tfds_data_dir={tfds_dir}", "--mlp_width=4,8", "--batch_size=50,100", "--seed=0,1",
          "--mlp_depth=2", "--mini_training_set_num_batches=4", "--mini_test_set_num_batches=2",
          "--max_steps=20", "--step_size=0.05", "--measure_every_steps=10",
          "--lanczos_max_steps=5"]


@contextlib.contextmanager
def mocked_tfds(name: str, folder: pathlib.Path, file_format: Optional[str] = None):
  """`folder/tfds`, a TFDS data dir for the dataset `name` with TFDS mocked (inside the block)
  to NUM_MOCK random examples per split; `file_format="array_record"` for the stream's
  random-access reads."""
  data_dir = folder / "tfds"
  data_dir.mkdir()
  write_mock_metadata(name, data_dir, file_format)
  with tfds.testing.mock_data(num_examples=NUM_MOCK, data_dir=str(data_dir),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    yield data_dir


def write_mock_metadata(name: str, data_dir: pathlib.Path,
                        file_format: Optional[str] = None) -> None:
  """Writes `name`'s dataset_info.json with NUM_MOCK-example splits (train and its held-out
  split; without split sizes a `batch_size=-1` read aborts TensorFlow; see test_images.py)."""
  builder = tfds.builder(name, data_dir=str(data_dir), file_format=file_format)
  spec = image_specs.SPECS.get(name)
  held_out = spec.test_split if spec else "test"
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[NUM_MOCK], num_bytes=0)
      for split in ("train", held_out)]))
  pathlib.Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


def dense_hessian(loss_fn, params, batch) -> np.ndarray:
  """∇²L on the raveled parameters, by `jax.hessian` (a dense [n, n] numpy array)."""
  flat, unravel = ravel_pytree(params)
  return np.asarray(jax.hessian(lambda f: loss_fn(unravel(f), batch))(flat))


def symmetric_with_spectrum(spectrum, seed: int = 0) -> np.ndarray:
  """Q diag(spectrum) Qᵀ with a random orthogonal Q."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(len(spectrum), len(spectrum))))
  return (q * np.asarray(spectrum)) @ q.T


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0, **hyper):
  """A base optimizer as a run builds it (`OptimizerSettings.make`)."""
  from sam_edge.optim.optimizers import OptimizerSettings
  return OptimizerSettings(name, learning_rate, hyper=hyper, weight_decay=weight_decay).make()


def flip_a_measured_float(path, value=None) -> None:
  """Flips the lowest bit of one 8-byte float (a BINFLOAT opcode) among the records and losses
  of the raw pickle at `path`: the first after the key 'records', or the first equal to `value`."""
  data = bytearray(pathlib.Path(path).read_bytes())
  seen_records = False
  for op, arg, pos in pickletools.genops(bytes(data)):
    seen_records = seen_records or arg == "records"
    if seen_records and op.name == "BINFLOAT" and (value is None or arg == value):
      data[pos + 8] ^= 0x01                  # the opcode, then the big-endian double: its last byte
      pathlib.Path(path).write_bytes(bytes(data))
      return
  raise AssertionError(f"no measured float in {path}")


def capture_figures(monkeypatch) -> dict:
  """{file name: panels} of every figure `plots.figure.write` writes from now on in the test
  (each still written)."""
  from sam_edge.plots import figure  # pylint: disable=import-outside-toplevel
  drawn, write = {}, figure.write

  def capture(path, panels, **kwargs):
    drawn[pathlib.Path(path).name] = panels
    return write(path, panels, **kwargs)
  monkeypatch.setattr(figure, "write", capture)
  return drawn
