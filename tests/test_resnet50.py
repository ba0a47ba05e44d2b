"""The ImageNet ResNet-50 (`models.imagenet_resnet`, `--nn_architecture=ResNet50`): its parameter
count against torchvision's 25,557,032 and a layer-by-layer sum (by `jax.eval_shape`, never a
real init), its layout, blocks that start as their shortcut, and on CIFAR-sized mock images a
SAM run with micro-batches and λ1 measurements through the command line."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import image_classification as ic
from sam_edge.cli import main as cli
from sam_edge.models import imagenet_resnet, registry
from tests.helpers import mocked_tfds

KEY = jax.random.key(0)


def variable_shapes(model, input_shape) -> dict:
  """``{"params", "batch_stats"}`` as ShapeDtypeStructs for inputs ``[1, *input_shape]``."""
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  return jax.eval_shape(lambda x: model.init(KEY, x, train=False), x)


def count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def layer_by_layer(channels: int, classes: int) -> int:
  """Stem conv 7x7xCx64 + BN(64); per bottleneck block of width c on c_in channels: 1x1 c_in->c,
  3x3 c->c, 1x1 c->4c (no biases) and their three BNs, and a 1x1 c_in->4c projection with its
  BN in the first block of each stage; Dense 2048 -> K with bias."""
  total, c_in = 49 * channels * 64 + 2 * 64, 64
  for blocks, c in ((3, 64), (4, 128), (6, 256), (3, 512)):
    for block in range(blocks):
      total += c_in * c + 9 * c * c + c * 4 * c + 2 * (c + c + 4 * c)
      total += (c_in * 4 * c + 2 * 4 * c) if block == 0 else 0
      c_in = 4 * c
  return total + 2048 * classes + classes


@pytest.mark.parametrize("input_shape, classes", [
    ((224, 224, 3), 1000), ((32, 32, 3), 10), ((28, 28, 1), 100)])
def test_parameter_count(input_shape, classes):
  model = registry.build("ResNet50", num_classes=classes)
  n = count(variable_shapes(model, input_shape)["params"])
  c = input_shape[-1]
  assert n == layer_by_layer(c, classes) == 3136 * c + 23_498_624 + 2049 * classes  # docstring's
  if classes == 1000:
    assert n == 25_557_032                                       # torchvision's resnet50


def test_layout_on_imagenet_images():
  model = registry.build("ResNet50", num_classes=1000)
  assert model == imagenet_resnet.ResNet50(num_classes=1000, activation="relu")
  shapes = variable_shapes(model, (224, 224, 3))
  params = shapes["params"]
  assert params["stem_conv"]["kernel"].shape == (7, 7, 3, 64)
  assert [name for name in params if name.startswith("stage")] == [
      f"stage{s}_block{b}" for s, n in enumerate((3, 4, 6, 3)) for b in range(n)]
  for stage, width in enumerate((64, 128, 256, 512)):
    first, second = params[f"stage{stage}_block0"], params[f"stage{stage}_block1"]
    assert first["conv2"]["kernel"].shape == (3, 3, width, width)
    assert first["conv3"]["kernel"].shape == (1, 1, width, 4 * width)
    assert first["projection"]["kernel"].shape == (1, 1, width * (2 if stage else 1), 4 * width)
    assert "projection" not in second
  assert params["head"]["kernel"].shape == (2048, 1000)
  # Every BatchNorm keeps a running mean and variance per channel, as many as its (γ, β).
  bn = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if path[-2].key.endswith("bn") or path[-2].key[:-1] == "bn"]
  assert count(shapes["batch_stats"]) == count(bn) == 2 * 26_560     # 53 BatchNorms' channels
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  logits = jax.eval_shape(lambda v, x: model.apply(v, x, False), shapes, x)
  assert logits.shape == (2, 1000)


def test_a_block_starts_as_its_shortcut():
  """The last BatchNorm of the residual branch starts at γ = 0 (the others at 1), so at
  initialisation a block with the identity shortcut maps h to σ(h), in both modes."""
  block = imagenet_resnet.BottleneckBlock(width=2, stride=1)
  x = jax.random.normal(jax.random.key(1), (3, 8, 8, 8))          # 8 = 4 × width channels
  variables = block.init(KEY, x, train=False)
  scales = {name: layer["scale"] for name, layer in variables["params"].items() if "bn" in name}
  assert set(scales) == {"bn1", "bn2", "bn3"}
  np.testing.assert_array_equal(scales["bn3"], 0)
  np.testing.assert_array_equal(scales["bn1"], 1)
  np.testing.assert_array_equal(scales["bn2"], 1)
  np.testing.assert_array_equal(block.apply(variables, x, False), jax.nn.relu(x))
  y, _ = block.apply(variables, x, True, mutable=["batch_stats"])
  np.testing.assert_array_equal(y, jax.nn.relu(x))
  projected = imagenet_resnet.BottleneckBlock(width=2, stride=2).init(KEY, x, train=False)
  np.testing.assert_array_equal(projected["params"]["projection_bn"]["scale"], 1)
  np.testing.assert_array_equal(projected["params"]["bn3"]["scale"], 0)


@pytest.mark.slow      # compiles ResNet-50's SAM step, HVP and evaluation on the CPU
def test_a_sam_step_and_a_measurement_on_mock_cifar10(tmp_path, capsys):
  """Mock CIFAR-10 (32x32: 1x1 after the last stage), batch 4, SAM on heavy ball with
  BatchNorm: one step, λ1 finite at its measurement, the test errors at the end. (One step and
  no micro-batches: ResNet-50's programs took minutes to compile on 2 CPU cores; micro-batches
  with BatchNorm are tested on a small BatchNorm network, test_accumulate.py.)"""
  raw = tmp_path / "raw.pkl"
  with mocked_tfds("cifar10", tmp_path) as data_dir:
    cli.parse_flags(ic.FLAGS, [
        ic.PROG, "--dataset=cifar10", f"--tfds_data_dir={data_dir}", "--nn_architecture=ResNet50",
        "--batch_size=4", "--mini_training_set_num_batches=2",
        "--mini_test_set_num_batches=1", "--optimizer=momentum", "--momentum=0.9",
        "--step_size=0.05", "--rho=0.05", "--loss=cross_entropy", "--max_steps=1",
        "--measure_every_steps=1", "--lanczos_max_steps=3", f"--raw_data_output={raw}",
        "--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
        "--loss_curve_output="])
    assert ic.main([]) == 0
  assert "ResNet50 with 23528522 parameters" in capsys.readouterr().out
  result = pickle.loads(raw.read_bytes())
  records, final = result["records"], result["final"]
  assert [r["step"] for r in records] == [0]
  assert np.isfinite(records[0]["eigenvalues"][0])
  assert final["steps"] == 1 and np.isfinite(result["losses"]["loss"]).all()
  assert 0 <= final["test_error"] <= 1 and 0 <= final["test_error_top5"] <= 1
