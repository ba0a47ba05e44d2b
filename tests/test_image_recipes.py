"""The SAM papers' training recipes end to end under `tfds.testing.mock_data`: residual networks
with BatchNorm, CIFAR-10/100 and SVHN, augmentation, label noise, label smoothing, schedules and
test curves; BatchNorm statistics move once per step and never in a measurement."""

import dataclasses
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import image_classification as ic
from sam_edge.cli import config as cli_config
from sam_edge.cli import main as cli
from sam_edge.curvature import measure
from sam_edge.data import image_specs
from sam_edge.models import losses, registry, stateful
from sam_edge.optim import update
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings
from sam_edge.run import experiment
from tests.helpers import (
  NUM_MOCK,
  RESNET_MEASURED,
  RESNET_RECIPE,
  TinyBatchNormNet,
)
from tests.helpers import mocked_tfds as mocked

NO_PDFS = ["--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
           "--loss_curve_output=", "--density_output=", "--curvature_output="]



def run(args: list[str]) -> int:
  cli.parse_flags(ic.FLAGS, [ic.PROG, *args])
  return ic.main([])


@pytest.mark.slow
def test_resnet20_sam_recipe_end_to_end(tmp_path, capsys):
  """ResNet-20, SAM on heavy-ball momentum with L2, flip-crop, 25% label noise, label smoothing,
  a cosine schedule with warm-up, measurements every step and evaluations every other step."""
  with mocked("mnist", tmp_path) as data_dir:
    code = run([f"--tfds_data_dir={data_dir}", *RESNET_RECIPE, *RESNET_MEASURED,
                f"--raw_data_output={tmp_path / 'raw.pkl'}",
                f"--eval_curve_output={tmp_path / 'eval.pdf'}", *NO_PDFS])
  out = capsys.readouterr().out
  assert code == 0
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  final = raw["final"]
  assert final["steps"] == 4 and final["noisy_labels"] == round(0.25 * NUM_MOCK)
  assert 0 <= final["test_error"] <= 1 and final["test_loss"] > 0
  assert [e["step"] for e in raw["evaluations"]] == [0, 2]
  assert all({"test_error", "test_loss", "seconds"} <= set(e) for e in raw["evaluations"])
  assert (tmp_path / "eval.pdf").read_bytes().startswith(b"%PDF")
  etas = [r["step_size"] for r in raw["records"]]
  # warm-up of 1 step (η₀·1/1), then η₀·½(1 + cos(π(s − 1)/(4 − 1))) for s = 1, 2, 3
  np.testing.assert_allclose(etas, [0.05, 0.05, 0.0375, 0.0125], rtol=1e-6)
  for r in raw["records"]:
    assert r["edge"] is None and r["edge_label"] is None    # SAM on momentum: no closed form
    assert r["two_over_eta"] == pytest.approx(2 / r["step_size"])
  assert "evaluate step 2" in out and "measure step 3" in out


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["ResNet32", "WRN16_8", "WRN28_10"])
def test_other_residual_networks_take_a_sam_step_and_a_measurement_in_shape(architecture):
  """The wide networks through the production SAM step and measurement, traced by
  `jax.eval_shape` (compiling WRN-28-10 for one CPU step took minutes and checked no more): the
  state keeps its shapes and dtypes, the loss and λ1 are scalars of float32."""
  model = registry.build(architecture, num_classes=10)
  images = jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.uint8)
  batch = {"image": images, "label": jax.ShapeDtypeStruct((4,), jnp.int32)}
  preprocess = lambda im: im.astype(jnp.float32) / 256
  params, stats = jax.eval_shape(lambda k, x: stateful.init_variables(model, k, preprocess(x)),
                                 jax.random.PRNGKey(0), images)
  forward = stateful.train_forward(model, preprocess)

  def model_forward(p, model_state, b, constants, dtype=jnp.float32):
    logits, new_stats = forward(p, model_state["batch_stats"], b["image"])
    return logits, {"batch_stats": new_stats}
  output_loss = lambda logits, b: losses.squared_error(logits, b["label"])
  optimizer = OptimizerSettings("momentum", 0.1, hyper={"momentum": 0.9}).make()
  state = jax.eval_shape(lambda p, s: update.init_state(p, optimizer, {"batch_stats": s}),
                         params, stats)
  def loss_fn(model_state):
    def fn(p, b):
      logits, new_model_state = model_forward(p, model_state, b, {})
      return output_loss(logits, b), new_model_state
    return fn

  new_state, loss = jax.eval_shape(lambda st, b: update.sam_update(
      loss_fn(st.model_state), optimizer, SamSettings(0.1), st, b), state, batch)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  same = jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), new_state, state)
  assert all(jax.tree.leaves(same))
  assert loss.shape == () and loss.dtype == jnp.float32
  settings = measure.MeasureSettings(batch_size=4, max_steps=3)
  record, _ = jax.eval_shape(lambda p, st, b, v, k: measure.measure(
      model_forward, output_loss, settings, p, measure.Context(st.model_state, st.opt_state,
                                                                st.step, {}), b, v, k),
      params, state, batch, jax.eval_shape(lambda p: measure.init_state(settings, p), params),
      jax.random.PRNGKey(1))
  assert record["eigenvalues"].shape == (1,) and record["eigenvalues"].dtype == jnp.float32


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn_cropped"])
def test_new_datasets_end_to_end(dataset, tmp_path, capsys):
  with mocked(dataset, tmp_path) as data_dir:
    code = run([f"--tfds_data_dir={data_dir}", f"--dataset={dataset}", "--mlp_width=8",
                "--mlp_depth=2", "--batch_size=8", "--max_steps=2", "--measure_every_steps=1",
                "--lanczos_max_steps=5", "--augment=flip_crop", "--label_noise=0.5",
                f"--raw_data_output={tmp_path / 'raw.pkl'}", *NO_PDFS])
  assert code == 0
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  final = raw["final"]
  assert final["noisy_labels"] == NUM_MOCK // 2
  assert final["data_fingerprint"]["dataset"] == dataset
  spec = image_specs.SPECS[dataset]
  assert final["parameters"] == int(np.prod(spec.image_shape)) * 8 + 8 + 8 * spec.num_classes + (
      spec.num_classes)
  assert len(raw["records"]) == 2


@pytest.mark.slow
def test_every_augmentation_with_per_channel_normalisation_end_to_end(tmp_path, capsys):
  """All the papers' augmentations of the training batches, the SAM paper's normalisation."""
  with mocked("cifar10", tmp_path) as data_dir:
    code = run([f"--tfds_data_dir={data_dir}", "--dataset=cifar10", "--mlp_width=8",
                "--mlp_depth=2", "--batch_size=8", "--max_steps=3", "--hessian_check_gap=0",
                "--augment=flip,crop,cutout,brightness,autoaugment", "--cutout_size=8",
                "--normalize=per_channel", f"--raw_data_output={tmp_path / 'raw.pkl'}",
                *NO_PDFS])
  assert code == 0
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  assert raw["final"]["steps"] == 3 and 0 <= raw["final"]["test_error"] <= 1
  assert all(np.isfinite(raw["losses"]["loss"])) and len(raw["losses"]["loss"]) == 3
  assert raw["config"]["augment"] == "flip,crop,cutout,brightness,autoaugment"
  assert raw["config"]["normalize"] == "per_channel" and raw["config"]["cutout_size"] == 8


def batchnorm_runs(tmp_path):
  """The ResNet-20 recipe's run with and without measurements: (measured, unmeasured) final
  states."""
  with mocked("mnist", tmp_path) as data_dir:
    cli.parse_flags(ic.FLAGS, [ic.PROG, f"--tfds_data_dir={data_dir}", *RESNET_RECIPE,
                               *RESNET_MEASURED, "--raw_data_output=", *NO_PDFS])
    ic.problems(ic.FLAGS)
    measured = dataclasses.replace(cli_config.of_flags(ic.TASK, ic.FLAGS).run,
                                   outputs=())
    unmeasured = dataclasses.replace(measured, loop=dataclasses.replace(
        measured.loop, measure_every_steps=None, measure_gap_s=None))
    finals = []
    for settings in (measured, unmeasured):
      seen = {}

      def build(key):
        problem = ic.TASK.build(cli_config.of_flags(ic.TASK, ic.FLAGS).problem, key)
        seen["initial"] = jax.tree.map(np.array, problem.model_state)

        def evaluate(params, model_state, constants):
          seen["final"] = jax.tree.map(np.array, model_state)
          return problem.evaluate(params, model_state, constants)
        return dataclasses.replace(problem, evaluate=evaluate)

      raw, code = experiment.run(settings, build, config={})
      assert code == 0
      finals.append(seen)
  return finals


@pytest.mark.slow
def test_batchnorm_statistics_never_move_in_a_measurement(tmp_path, capsys):
  measured, unmeasured = batchnorm_runs(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, measured["final"], unmeasured["final"])
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), measured["initial"],
                       measured["final"])
  assert any(jax.tree.leaves(moved))                         # ... and training moved them


@pytest.mark.slow
def test_batchnorm_statistics_move_once_per_sam_step():
  """One SAM step through `update.sam_update`: the new running statistics are those of one
  train-mode pass at the unperturbed weights (the ascent pass's are discarded)."""
  model = TinyBatchNormNet(num_classes=10)
  key = jax.random.PRNGKey(0)
  x = jax.random.uniform(key, (4, 12, 12, 1), minval=0, maxval=255).astype(jnp.uint8)
  batch = {"image": x, "label": jnp.array([0, 1, 2, 3], jnp.int32)}
  preprocess = lambda im: im.astype(jnp.float32) / 256
  params, stats = stateful.init_variables(model, key, preprocess(x[:1]))
  forward = stateful.train_forward(model, preprocess)

  def train(p, s, b):
    logits, new_stats = forward(p, s, b["image"])
    return losses.squared_error(logits, b["label"]), new_stats

  optimizer = optax.sgd(0.1)
  step = jax.jit(lambda state, b: update.sam_update(
      lambda p, bb: train(p, state.model_state, bb), optimizer, SamSettings(rho=0.5), state, b),
      donate_argnums=0)
  _, expected = train(params, stats, batch)                   # the unperturbed pass
  direction = jax.grad(lambda p: train(p, stats, batch)[0])(params)
  scale = 0.5 / (optax.tree.norm(direction) + 1e-5)
  _, ascent = train(optax.tree.add_scale(params, scale, direction), stats, batch)
  state = update.init_state(jax.tree.map(jnp.copy, params), optimizer, stats)   # donated below
  new_state, _ = step(state, batch)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               new_state.model_state, expected)
  differs = jax.tree.map(lambda a, b: not np.allclose(a, b, atol=1e-6), ascent, expected)
  assert any(jax.tree.leaves(differs))                        # the test tells the passes apart
