"""The Vision Transformer (`models.vit`, `--nn_architecture=ViT`): its parameter count is the
docstring's formula, its LayerNorms are what SAM-ON perturbs, micro-batches give the full batch's
gradients, a run takes SAM steps and measurements, and bad ViT flags are one line."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import image_classification as ic
from sam_edge.cli import main as cli
from sam_edge.models import normalization, registry, vit
from sam_edge.optim import update
from sam_edge.optim.sam import SamSettings

TINY = {"vit_patch_size": 4, "vit_depth": 2, "vit_width": 8, "vit_heads": 2, "vit_mlp_width": 12}
KEY = jax.random.PRNGKey(0)


def formula(p, c, k, n, d, depth, m):
  """The module doc's count: p²Cd + d + Nd + L(4d² + 2dm + 9d + m) + 2d + dK + K."""
  return p * p * c * d + d + n * d + depth * (4 * d * d + 2 * d * m + 9 * d + m) + 2 * d + d * k + k


def param_shapes(model, shape):
  return jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, *shape))))["params"]


@pytest.mark.parametrize("given, shape, classes, count", [
    ({}, (32, 32, 3), 10, 5_362_378),                           # the defaults on CIFAR-10
    (TINY, (28, 28, 1), 10, None), ({**TINY, "vit_patch_size": 2}, (8, 8, 3), 4, None)])
def test_parameter_count_is_the_docstring_formula(given, shape, classes, count):
  values = {o.name: given.get(o.name, o.default) for o in registry.BY_NAME["ViT"].options}
  model = registry.build("ViT", given, num_classes=classes)
  total = sum(x.size for x in jax.tree.leaves(param_shapes(model, shape)))
  p = values["vit_patch_size"]
  assert total == formula(p, shape[2], classes, shape[0] * shape[1] // p**2, values["vit_width"],
                          values["vit_depth"], values["vit_mlp_width"])
  assert count is None or total == count


def test_sam_on_perturbs_exactly_the_layernorms():
  """The mask marks the 2L + 1 LayerNorms' scales and offsets, nothing else, and a SAM-ON step
  moves ε only there."""
  model = registry.build("ViT", TINY, num_classes=3)
  x = jax.random.normal(KEY, (6, 8, 8, 1))
  y = jax.nn.one_hot(jnp.arange(6) % 3, 3)
  params = model.init(KEY, x)
  marked = [jax.tree_util.keystr(p) for p, keep in
            jax.tree_util.tree_leaves_with_path(normalization.mask(params)) if keep]
  assert len(marked) == 2 * (2 * TINY["vit_depth"] + 1)
  assert all("LayerNorm" in m and m.endswith(("['scale']", "['bias']")) for m in marked)
  loss = lambda p, batch: (jnp.mean((model.apply(p, batch["x"]) - batch["y"]) ** 2), {})
  sam = SamSettings(0.1, perturbed="normalization")
  out = jax.jit(lambda p, b: update.sam_gradients(loss, p, b, sam))(params, {"x": x, "y": y})
  moved = jax.tree.map(lambda e: bool(jnp.any(e != 0)), out.eps)
  assert jax.tree.leaves(moved) == jax.tree.leaves(normalization.mask(params))


def test_accumulated_batches_give_the_full_batch_gradients():
  """--accumulate_batches=4 (micro-batches of 2): L, ∇L and SAM's ∇L(w + ε) of the batch of 8."""
  model = registry.build("ViT", TINY, num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 8, 8, 1))
  batch = {"x": x, "y": jax.nn.one_hot(jnp.arange(8) % 3, 3)}
  params = model.init(KEY, x)
  loss = lambda p, b: (jnp.mean((model.apply(p, b["x"]) - b["y"]) ** 2), {})
  whole, split = (jax.jit(lambda p, b, k=k: update.sam_gradients(
      loss, p, b, SamSettings(0.1, micro_batches=k)))(params, batch) for k in (1, 4))
  for a, b in zip(jax.tree.leaves((whole.loss, whole.grad, whole.direction)),
                  jax.tree.leaves((split.loss, split.grad, split.direction)), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


@pytest.mark.slow                 # real Fashion-MNIST: preparing it takes about a minute
def test_a_vit_run_takes_sam_steps_and_measures(real_tfds, tmp_path):
  """Fashion-MNIST (28x28: 7x7 patches of 4), SAM-ON with micro-batches: each measurement has
  a finite λ1 and the SAM-edge beside it."""
  raw = tmp_path / "raw.pkl"
  cli.parse_flags(ic.FLAGS, [
      ic.PROG, "--dataset=fashion_mnist", f"--tfds_data_dir={real_tfds}", "--nn_architecture=ViT",
      *(f"--{k}={v}" for k, v in TINY.items()), "--batch_size=16", "--accumulate_batches=2",
      "--mini_training_set_num_batches=2", "--mini_test_set_num_batches=1", "--rho=0.05",
      "--sam_params=normalization", "--step_size=0.1", "--max_steps=2",
      "--measure_every_steps=1", "--lanczos_max_steps=4", f"--raw_data_output={raw}",
      "--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
      "--loss_curve_output="])
  assert ic.main([]) == 0
  with open(raw, "rb") as f:
    records = pickle.load(f)["records"]
  assert [r["step"] for r in records] == [0, 1]
  assert all(np.isfinite(r["eigenvalues"][0]) and r["sam_edge"] > 0 for r in records)
  assert all(r["edge"] is None for r in records)      # SAM-ON has no known edge (optim.edges)


@pytest.mark.parametrize("arg, line", [
    ("--vit_heads=5", "--vit_width=192 must be a multiple of --vit_heads=5"),
    ("--vit_patch_size=5", "--vit_patch_size=5 must divide the side of the 28x28 images of mnist"),
    ("--vit_depth=0", "--vit_depth must be at least 1, got 0")])
def test_bad_vit_flags_are_one_line_and_exit_2(arg, line, capsys):
  assert cli.entry(ic.TASK, ic.flag_values(), ["--nn_architecture=ViT", arg]) == 2
  err = [e for e in capsys.readouterr().err.splitlines() if e.strip()]
  assert err == [f"{ic.PROG}: error: {line}"]


def test_the_vit_refuses_patches_that_do_not_tile_the_image():
  with pytest.raises(ValueError, match="patch size 3"):
    param_shapes(vit.ViT(patch_size=3), (8, 8, 1))
