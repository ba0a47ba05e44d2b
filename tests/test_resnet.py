"""Tests for sam_edge.models.resnet and sam_edge.models.stateful.

Architectures: parameter counts (by jax.eval_shape, never a real init of the wide networks)
against counts summed layer by layer here; logits and new running statistics against a
hand-written float64 forward pass (lax convolutions, BatchNorm written out). BatchNorm glue: one
simulated SAM step moves the running statistics once, from the unperturbed pass; a measurement
returns a scalar and is the loss training differentiates; eval mode is per example, train mode
couples the batch. Real forward/backward passes use ResNet20 on at most 4 images.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge.curvature.objective import Objective
from sam_edge.models import losses, registry, resnet, stateful

REFERENCE_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "elu": jax.nn.elu,
                         "gelu": jax.nn.gelu, "softplus": jax.nn.softplus}


def variable_shapes(model, input_shape):
  """``{"params", "batch_stats"}`` as ShapeDtypeStructs for inputs ``[1, *input_shape]``."""
  x = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)


def count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def random_variables(model, input_shape, seed=0):
  """Parameters N(0, 0.3²) (BN scales 1 + N(0, 0.3²)) and running statistics (mean N(0, 0.3²),
  var U(0.5, 1.5)) of the right shapes, drawn with numpy (float64)."""
  rng = np.random.default_rng(seed)
  shapes = variable_shapes(model, input_shape)

  def param(path, s):
    noise = 0.3 * rng.standard_normal(s.shape)
    return noise + 1.0 if path[-1].key == "scale" else noise

  def stat(path, s):
    if path[-1].key == "var":
      return rng.uniform(0.5, 1.5, s.shape)
    return 0.3 * rng.standard_normal(s.shape)
  return (jax.tree_util.tree_map_with_path(param, shapes["params"]),
          jax.tree_util.tree_map_with_path(stat, shapes["batch_stats"]))


# ---------------------------------------------------------------- parameter counts

def resnet_param_count(n: int, channels: int, classes: int) -> int:
  """Layer by layer: stem conv 3x3xCx16 + BN(16); per block two 3x3 convs and two BNs; the
  option-A shortcut has no parameters; Dense 64 -> K with bias."""
  total = 9 * channels * 16 + 2 * 16
  c_in = 16
  for c in (16, 32, 64):
    for _ in range(n):
      total += 9 * c_in * c + 9 * c * c + 2 * (2 * c)
      c_in = c
  return total + 64 * classes + classes


def wrn_param_count(depth: int, k: int, channels: int, classes: int) -> int:
  """Layer by layer: stem conv 3x3xCx16; per block BN(c_in), 3x3 c_in->c, BN(c), 3x3 c->c and a
  1x1 c_in->c projection when c_in != c; final BN(64k); Dense 64k -> K with bias."""
  total = 9 * channels * 16
  c_in = 16
  for c in (16 * k, 32 * k, 64 * k):
    for _ in range((depth - 4) // 6):
      total += 2 * c_in + 9 * c_in * c + 2 * c + 9 * c * c + (c_in * c if c_in != c else 0)
      c_in = c
  return total + 2 * c_in + c_in * classes + classes


def resnet18_param_count(k: int, channels: int, classes: int) -> int:
  """Layer by layer: stem conv 3x3xCxk + BN(k); per block two 3x3 convs and two BNs, and where
  the shape changes a 1x1 projection with its BN; Dense 8k -> K with bias."""
  total = 9 * channels * k + 2 * k
  c_in = k
  for c in (k, 2 * k, 4 * k, 8 * k):
    for _ in range(2):
      total += 9 * c_in * c + 9 * c * c + 2 * (2 * c) + (c_in * c + 2 * c if c_in != c else 0)
      c_in = c
  return total + c_in * classes + classes


@pytest.mark.parametrize("k, input_shape, classes", [
    (2, (32, 32, 3), 10), (3, (28, 28, 1), 100), (11, (32, 32, 3), 10), (64, (32, 32, 3), 10)])
def test_resnet18_param_counts(k, input_shape, classes):
  model = registry.build("ResNet18", {"resnet_width": k}, num_classes=classes)
  n = count(variable_shapes(model, input_shape)["params"])
  c = input_shape[-1]
  assert n == resnet18_param_count(k, c, classes)
  assert n == 2724 * k * k + (9 * c + 150 + 8 * classes) * k + classes      # the docstring's
  if k == 64:
    assert n == 11_173_962                                  # the standard CIFAR ResNet-18


@pytest.mark.slow          # compiles ResNet-18 (init and a training-mode apply): ~14 s cold
def test_resnet18_widths_and_projections():
  shapes = variable_shapes(resnet.ResNet18(width=4, num_classes=10), (32, 32, 3))
  params = shapes["params"]
  assert params["stem_conv"]["kernel"].shape == (3, 3, 3, 4)
  assert "projection" not in params["stage0_block0"] and "projection" not in params[
      "stage1_block1"]
  assert params["stage3_block0"]["projection"]["kernel"].shape == (1, 1, 16, 32)
  assert params["head"]["kernel"].shape == (32, 10)
  assert shapes["batch_stats"]["stage3_block0"]["projection_bn"]["mean"].shape == (32,)
  x = jnp.zeros((2, 32, 32, 3))
  model = resnet.ResNet18(width=2, num_classes=10)
  variables = model.init(jax.random.key(0), x, train=False)
  logits, updates = model.apply(variables, x, True, mutable=["batch_stats"])
  assert logits.shape == (2, 10) and set(updates) == {"batch_stats"}


@pytest.mark.slow
def test_resnet18_end_to_end_mocked(mock_mnist, tmp_path, capsys):
  import image_classification as ic
  from sam_edge.cli import main as cli
  cli.parse_flags(ic.FLAGS, ["image_classification", f"--tfds_data_dir={mock_mnist}",
                             "--nn_architecture=ResNet18", "--resnet_width=2", "--batch_size=8",
                             "--max_steps=2", "--hessian_check_gap=0",
                             f"--raw_data_output={tmp_path / 'raw.pkl'}", "--eigs_curve_output=",
                             "--eigs_se_only_output=", "--alignment_curve_output=",
                             "--loss_curve_output=", "--eval_curve_output="])
  assert ic.main([]) == 0
  out = capsys.readouterr().out
  assert f"ResNet18 with {resnet18_param_count(2, 1, 10)} parameters" in out
  assert "Test error:" in out


@pytest.mark.parametrize("name, n", [("ResNet20", 3), ("ResNet32", 5)])
@pytest.mark.parametrize("input_shape, classes", [((32, 32, 3), 10), ((28, 28, 1), 100)])
def test_resnet_param_counts(name, n, input_shape, classes):
  model = registry.build(name, num_classes=classes)
  assert count(variable_shapes(model, input_shape)["params"]) == resnet_param_count(
      n, input_shape[-1], classes)


@pytest.mark.parametrize("name, depth, k", [("WRN16_8", 16, 8), ("WRN28_10", 28, 10)])
@pytest.mark.parametrize("input_shape, classes", [((32, 32, 3), 10), ((28, 28, 1), 100)])
def test_wrn_param_counts(name, depth, k, input_shape, classes):
  model = registry.build(name, num_classes=classes)
  assert count(variable_shapes(model, input_shape)["params"]) == wrn_param_count(
      depth, k, input_shape[-1], classes)


@pytest.mark.parametrize("name, millions", [
    ("ResNet20", 0.27), ("ResNet32", 0.46), ("WRN16_8", 11.0), ("WRN28_10", 36.5)])
def test_param_counts_match_the_papers(name, millions):
  # He et al. 2016 Table 6 and Zagoruyko & Komodakis 2016 Tables, CIFAR-10.
  model = registry.build(name, num_classes=10)
  params = count(variable_shapes(model, (32, 32, 3))["params"])
  assert round(params / 1e6, 2 if millions < 1 else 1) == millions


def test_batch_stats_are_two_per_bn_channel():
  shapes = variable_shapes(registry.build("ResNet20", num_classes=10), (32, 32, 3))
  # Every BN has (scale, bias) in params and (mean, var) in batch_stats: 19 BNs in ResNet20.
  bn_params = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(shapes["params"])
               if "bn" in path[-2].key]
  assert count(shapes["batch_stats"]) == count(bn_params) == 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)


def test_wrn_projection_only_where_the_shape_changes():
  params = variable_shapes(resnet.WideResNet(depth=10, widen_factor=1), (32, 32, 3))["params"]
  assert "projection" not in params["stage0_block0"]            # 16 -> 16, stride 1
  assert params["stage1_block0"]["projection"]["kernel"].shape == (1, 1, 16, 32)
  wide = variable_shapes(resnet.WideResNet(depth=16, widen_factor=8), (32, 32, 3))["params"]
  assert wide["stage0_block0"]["projection"]["kernel"].shape == (1, 1, 16, 128)
  assert "projection" not in wide["stage0_block1"]


# ---------------------------------------------------------------- shapes and arguments

@pytest.mark.parametrize("name", [a.name for a in registry.ARCHITECTURES if a.batch_norm])
@pytest.mark.parametrize("input_shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3), (9, 13, 5)])
def test_logit_shapes_for_any_input(name, input_shape):
  model = registry.build(name, num_classes=7)
  variables = variable_shapes(model, input_shape)
  x = jax.ShapeDtypeStruct((3, *input_shape), jnp.float32)
  for train in (False, True):
    logits, _ = jax.eval_shape(
        lambda v, x: model.apply(v, x, train, mutable=["batch_stats"]), variables, x)
    assert logits.shape == (3, 7) and logits.dtype == jnp.float32


@pytest.mark.parametrize("input_shape", [(7, 8, 1), (8, 7, 3), (64, 3)])
def test_rejects_images_smaller_than_8x8(input_shape):
  with pytest.raises(ValueError, match="8x8"):
    variable_shapes(registry.build("ResNet20", num_classes=10), input_shape)


@pytest.mark.parametrize("depth", [8, 12, 4])
def test_wrn_rejects_depth_not_6n_plus_4(depth):
  with pytest.raises(ValueError, match="6n"):
    variable_shapes(resnet.WideResNet(depth=depth, widen_factor=2), (8, 8, 1))


# ---------------------------------------------------------------- float64 reference

def ref_conv(x, kernel, stride):
  """3x3 with one pixel of zero padding each side, or 1x1 without padding (by kernel size)."""
  pad = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)


def ref_bn(h, p, s, train):
  """γ (h − μ) / sqrt(v + 1e-5) + β; train: batch (μ, v), new stats 0.9 s + 0.1 (μ, v)."""
  if train:
    mu = h.mean(axis=(0, 1, 2))
    var = ((h - mu) ** 2).mean(axis=(0, 1, 2))
    new = {"mean": 0.9 * s["mean"] + 0.1 * mu, "var": 0.9 * s["var"] + 0.1 * var}
  else:
    mu, var, new = s["mean"], s["var"], s
  return p["scale"] * (h - mu) / jnp.sqrt(var + 1e-5) + p["bias"], new


def reference_resnet(params, stats, x, n, train, act):
  """He et al.'s CIFAR ResNet with option A shortcuts, written out; returns (logits, stats)."""
  new = {}
  h, new["stem_bn"] = ref_bn(ref_conv(x, params["stem_conv"]["kernel"], 1),
                             params["stem_bn"], stats["stem_bn"], train)
  h = act(h)
  for stage, c in enumerate((16, 32, 64)):
    for block in range(n):
      name = f"stage{stage}_block{block}"
      p, s, new[name] = params[name], stats[name], {}
      stride = 2 if stage > 0 and block == 0 else 1
      y, new[name]["bn1"] = ref_bn(ref_conv(h, p["conv1"]["kernel"], stride), p["bn1"],
                                   s["bn1"], train)
      y, new[name]["bn2"] = ref_bn(ref_conv(act(y), p["conv2"]["kernel"], 1), p["bn2"],
                                   s["bn2"], train)
      if stride == 2:                     # option A: subsample, then zero channels c_in..c
        sub = h[:, ::2, ::2, :]
        h = jnp.concatenate([sub, jnp.zeros(sub.shape[:3] + (c - sub.shape[3],))], axis=-1)
      h = act(y + h)
  logits = h.mean(axis=(1, 2)) @ params["head"]["kernel"] + params["head"]["bias"]
  return logits, new


def reference_wrn(params, stats, x, depth, k, train, act):
  """Zagoruyko & Komodakis's pre-activation WRN, written out; returns (logits, stats)."""
  new = {}
  h = ref_conv(x, params["stem_conv"]["kernel"], 1)
  c_in = 16
  for stage, c in enumerate((16 * k, 32 * k, 64 * k)):
    for block in range((depth - 4) // 6):
      name = f"stage{stage}_block{block}"
      p, s, new[name] = params[name], stats[name], {}
      stride = 2 if stage > 0 and block == 0 else 1
      o, new[name]["bn1"] = ref_bn(h, p["bn1"], s["bn1"], train)
      o = act(o)
      y, new[name]["bn2"] = ref_bn(ref_conv(o, p["conv1"]["kernel"], stride), p["bn2"],
                                   s["bn2"], train)
      y = ref_conv(act(y), p["conv2"]["kernel"], 1)
      h = y + (ref_conv(o, p["projection"]["kernel"], stride) if c != c_in or stride != 1
               else h)
      c_in = c
  h, new["final_bn"] = ref_bn(h, params["final_bn"], stats["final_bn"], train)
  logits = act(h).mean(axis=(1, 2)) @ params["head"]["kernel"] + params["head"]["bias"]
  return logits, new


@pytest.mark.parametrize("arch, activation", [
    ("ResNet20", "relu"), ("ResNet20", "elu"), ("WRN10_2", "relu"), ("WRN10_2", "softplus")])
@pytest.mark.parametrize("train", [False, True])
def test_matches_float64_reference(arch, activation, train):
  input_shape = (10, 10, 2)                     # odd sizes in stage 3: 10 -> 5 -> 3
  if arch == "ResNet20":
    model = registry.build("ResNet20", num_classes=5, activation=activation)
    reference = lambda p, s, x: reference_resnet(p, s, x, 3, train,
                                                 REFERENCE_ACTIVATIONS[activation])
  else:
    model = resnet.WideResNet(depth=10, widen_factor=2, num_classes=5, activation=activation)
    reference = lambda p, s, x: reference_wrn(p, s, x, 10, 2, train,
                                              REFERENCE_ACTIVATIONS[activation])
  with jax.enable_x64(True):
    params, stats = random_variables(model, input_shape)
    x = np.random.default_rng(1).standard_normal((3, *input_shape))
    logits, updates = jax.jit(lambda p, s, x: model.apply(
        {"params": p, "batch_stats": s}, x, train, mutable=["batch_stats"]))(params, stats, x)
    want_logits, want_stats = jax.jit(reference)(params, stats, x)
    assert logits.dtype == jnp.float64
    np.testing.assert_allclose(logits, want_logits, rtol=1e-10, atol=1e-10)
    got_stats = updates["batch_stats"]
    assert jax.tree.structure(got_stats) == jax.tree.structure(want_stats)
    for got, want in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats)):
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_activations_change_the_network():
  model = {a: registry.build("ResNet20", num_classes=3, activation=a)
           for a in ("relu", "gelu")}
  params, stats = random_variables(model["relu"], (8, 8, 1))
  x = np.random.default_rng(2).standard_normal((2, 8, 8, 1)).astype(np.float32)
  relu, gelu = jax.jit(lambda p, s, x: tuple(
      model[a].apply({"params": p, "batch_stats": s}, x, False) for a in ("relu", "gelu")))(
          params, stats, x)
  assert np.abs(np.asarray(relu) - np.asarray(gelu)).max() > 1e-3


# ---------------------------------------------------------------- BatchNorm glue

def identity(images):
  return images


@pytest.fixture(scope="module")
def resnet20_mnist():  # its tests compile ResNet-20's training step: slow
  """ResNet20 for 28x28x1 inputs, really initialised, and a batch of 4 images."""
  model = registry.build("ResNet20", num_classes=10)
  images = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  params, stats = jax.jit(lambda k, x: stateful.init_variables(model, k, x))(
      jax.random.key(0), images)
  return model, params, stats, {"image": images, "label": jnp.array([3, 1, 4, 1])}


@pytest.mark.slow
def test_init(resnet20_mnist):
  _, params, stats, _ = resnet20_mnist
  np.testing.assert_array_equal(stats["stage1_block0"]["bn1"]["mean"], 0)
  np.testing.assert_array_equal(stats["stage2_block2"]["bn2"]["var"], 1)
  np.testing.assert_array_equal(params["stem_bn"]["scale"], 1)
  np.testing.assert_array_equal(params["stem_bn"]["bias"], 0)
  np.testing.assert_array_equal(params["head"]["bias"], 0)
  kernel = np.asarray(params["stage2_block1"]["conv2"]["kernel"])     # 3x3x64x64
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (9 * 64)), rtol=0.03)   # He normal


def sam_step(train_fn, params, stats, batch, rho=0.05, eta=0.1):
  """One SAM step with the trainer's convention, as the issue prescribes: the running
  statistics come from the unperturbed pass, the ascent pass's are discarded. Also returns the
  ascent pass's statistics, for the test only."""
  loss_fn = lambda w: train_fn(w, stats, batch)
  (loss, new_stats), grad = jax.value_and_grad(loss_fn, has_aux=True)(params)
  norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grad)))
  perturbed = jax.tree.map(lambda w, g: w + rho * g / (norm + 1e-5), params, grad)
  sam_grad, ascent_stats = jax.grad(loss_fn, has_aux=True)(perturbed)
  new_params = jax.tree.map(lambda w, g: w - eta * g, params, sam_grad)
  return new_params, new_stats, loss, ascent_stats


@pytest.mark.slow
def test_sam_step_updates_running_statistics_once_from_the_unperturbed_pass(resnet20_mnist):
  model, params, stats, batch = resnet20_mnist
  train_fn = train_loss(model, losses.cross_entropy)
  step = jax.jit(lambda p, s, b: sam_step(train_fn, p, s, b))
  new_params, new_stats, loss, ascent_stats = step(params, stats, batch)
  assert np.isfinite(loss)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(new_params))
  # The stem BN by hand: one move 0.9 · (0, 1) + 0.1 · (μ, v) of conv(x) at the unperturbed w.
  h = np.asarray(ref_conv(batch["image"], params["stem_conv"]["kernel"], 1), np.float64)
  mu, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
  np.testing.assert_allclose(new_stats["stem_bn"]["mean"], 0.1 * mu, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(new_stats["stem_bn"]["var"], 0.9 + 0.1 * var, rtol=1e-5)
  # Every layer: the statistics of one train-mode pass at w (not at w + ε, not two moves).
  # The ascent pass has statistics of its own, so the comparison tells the passes apart.
  _, once = jax.jit(train_fn)(params, stats, batch)
  for got, want, _ in zip(jax.tree.leaves(new_stats), jax.tree.leaves(once),
                               jax.tree.leaves(ascent_stats)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
      jax.tree.leaves(ascent_stats), jax.tree.leaves(new_stats))) > 1e-4
  # A second step moves them once more: the stem mean becomes 0.9 · 0.1 μ(w₀) + 0.1 μ(w₁).
  _, stats2, _, _ = step(new_params, new_stats, batch)
  h1 = np.asarray(ref_conv(batch["image"], new_params["stem_conv"]["kernel"], 1), np.float64)
  np.testing.assert_allclose(stats2["stem_bn"]["mean"], 0.09 * mu + 0.1 * h1.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_the_measured_loss_is_the_trained_loss_and_returns_no_statistics(resnet20_mnist):
  """A measurement's objective (the train-mode forward pass with the measured batch's own
  statistics, then the loss) has the trained loss's value and gradient, whatever the running
  statistics, and hands back a scalar only."""
  model, params, stats, batch = resnet20_mnist
  train_fn = train_loss(model, losses.cross_entropy)
  forward = stateful.train_forward(model, identity)

  def objective(running):
    return Objective(lambda p, b: forward(p, running, b["image"])[0],
                     lambda logits, b: losses.cross_entropy(logits, b["label"]))
  out = jax.eval_shape(objective(stats).loss, params, batch)
  assert isinstance(out, jax.ShapeDtypeStruct) and out.shape == ()

  @jax.jit
  def both(params, stats, other_stats, batch):
    measured = jax.value_and_grad(objective(stats).loss)(params, batch)
    (trained, _), train_grad = jax.value_and_grad(train_fn, has_aux=True)(params, stats, batch)
    return measured, (trained, train_grad), objective(other_stats).loss(params, batch)
  other = jax.tree.map(lambda s: s + 0.5, stats)
  (value, grad), (train_value, train_grad), with_other = both(params, stats, other, batch)
  np.testing.assert_allclose(value, train_value, rtol=1e-6)
  for g, t in zip(jax.tree.leaves(grad), jax.tree.leaves(train_grad)):
    np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-7)
  # Batch statistics: the running ones do not enter.
  np.testing.assert_allclose(with_other, value, rtol=1e-6)


def train_loss(model, loss):
  """(params, batch_stats, batch) -> (L, new statistics): the training loss of the task."""
  forward = stateful.train_forward(model, identity)

  def fn(params, batch_stats, batch):
    logits, new_stats = forward(params, batch_stats, batch["image"])
    return loss(logits, batch["label"]), new_stats
  return fn


def small_batch_logits(train: bool):
  """ResNet20 (8x8x1 inputs, random running statistics): a jitted images -> logits in the
  given mode (train mode through train_loss's forward pass, statistics dropped)."""
  model = registry.build("ResNet20", num_classes=10)
  params, stats = random_variables(model, (8, 8, 1))
  params, stats = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), (params, stats))
  if not train:
    return jax.jit(lambda x: stateful.eval_logits(model, identity)(params, stats, x))
  return jax.jit(lambda x: model.apply({"params": params, "batch_stats": stats}, x, True,
                                       mutable=["batch_stats"])[0])


def test_eval_mode_is_per_example():
  logits = small_batch_logits(train=False)
  x = np.random.default_rng(3).standard_normal((4, 8, 8, 1)).astype(np.float32)
  together = np.asarray(logits(x[:3]))
  swapped = np.asarray(logits(np.concatenate([x[:1], x[3:], 10 * x[1:2]])))
  alone = np.concatenate([np.asarray(logits(x[i:i + 1])) for i in range(3)])
  # Logits of order 1e9 (random statistics): a batch of 3 and a batch of 1 are compiled apart
  # and may sum in another order, a few float32 ulps; mixed examples would differ wholesale.
  np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(swapped[0], together[0], rtol=1e-4, atol=1e-6)


def test_train_mode_uses_batch_statistics():
  logits = small_batch_logits(train=True)
  x = np.random.default_rng(3).standard_normal((3, 8, 8, 1)).astype(np.float32)
  changed = x.copy()
  changed[1:] = 3 * changed[1:] + 1                 # other examples only
  assert np.abs(np.asarray(logits(x))[0] - np.asarray(logits(changed))[0]).max() > 1e-3
  # Doubling the whole batch doubles conv(x) (no bias), which the stem BN's batch statistics
  # divide out (up to eps = 1e-5): the same logits. Running statistics would not.
  np.testing.assert_allclose(logits(2 * x), logits(x), rtol=1e-4, atol=1e-5)
  assert np.abs(np.asarray(small_batch_logits(train=False)(2 * x) - logits(x))).max() > 1e-2
