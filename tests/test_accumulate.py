"""--accumulate_batches=k: every gradient a mean over k interleaved micro-batches in a `lax.scan`;
equal to the unsplit step to float tolerance where the loss is a mean over examples, for every
variant that accumulates; ESAM refused; with BatchNorm each micro-batch uses its own statistics.
"""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import image_classification as ic
from sam_edge.cli import main as cli
from sam_edge.curvature import measure
from sam_edge.data import batching
from sam_edge.models import losses, stateful
from sam_edge.optim import optimizers, sam_steps, update
from sam_edge.optim.method import Method
from sam_edge.optim.sam import SAM_VARIANTS, SamSettings
from tests.helpers import TinyBatchNormNet

ACCUMULATING = tuple(k for k, v in SAM_VARIANTS.items() if v.accumulates)


def regression(params, batch):
  """Mean squared error of a tiny tanh model; aux: the mean pre-activation (a stand-in for
  BatchNorm's statistics)."""
  pre = batch["x"] @ params["W"] + params["b"]
  out = jnp.tanh(pre) @ params["v"]
  return jnp.mean((out - batch["y"]) ** 2), {"mean_pre": jnp.mean(pre, axis=0)}


def regression_problem(batch_size=12):
  k = jax.random.split(jax.random.PRNGKey(1), 5)
  params = {"W": jax.random.normal(k[0], (3, 2)), "b": jax.random.normal(k[1], (2,)),
            "v": jax.random.normal(k[2], (2,))}
  batch = {"x": jax.random.normal(k[3], (batch_size, 3)),
           "y": jax.random.normal(k[4], (batch_size,))}
  return params, batch


def test_split_interleaves():
  batch = {"x": jnp.arange(12)}
  np.testing.assert_array_equal(batching.split(batch, 3, interleave=True)["x"],
                                [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]])
  np.testing.assert_array_equal(batching.split(batch, 3)["x"][1], [3, 4, 5])
  with pytest.raises(ValueError, match="does not divide"):
    batching.split(batch, 5)


@pytest.mark.parametrize("kind", ACCUMULATING)
def test_accumulated_steps_equal_the_unsplit_ones(x64, kind):
  """Three steps with k = 4 micro-batches against k = 1: losses, parameters, the model state
  (the mean of the micro-batches' aux equals the batch's for this mean pre-activation) and the
  variant's state, to float64 rounding."""
  params, batch = regression_problem(12)
  params = jax.tree.map(lambda x: x.astype(jnp.float64), params)
  batch = jax.tree.map(lambda x: x.astype(jnp.float64), batch)
  runs = []
  for k in (1, 4):
    sam = SamSettings(0.2, kind, micro_batches=k)
    optimizer = optax.sgd(0.1, momentum=0.9)
    state = update.init_state(params, optimizer, {"mean_pre": jnp.zeros(2, jnp.float64)}, sam)
    step = jax.jit(lambda state, batch, sam=sam, optimizer=optimizer: update.sam_update(
        regression, optimizer, sam, state, batch,
        key=sam_steps.step_key(jax.random.PRNGKey(5), state.step)))
    out = []
    for _ in range(3):
      state, loss = step(state, batch)
      out.append((loss, state.params, state.model_state, state.sam_state))
    runs.append(out)
  for whole, split in zip(*runs, strict=True):
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_micro_batches_are_scanned_and_sam_ascends_along_the_accumulated_gradient():
  """Memory is that of one micro-batch: both of SAM's gradients are scans of k steps whose body
  sees B/k examples, one after the other (the ascent needs the whole accumulated g first)."""
  params, batch = regression_problem(12)
  jaxpr = jax.make_jaxpr(lambda p, b: update.sam_gradients(
      regression, p, b, SamSettings(0.2, micro_batches=4)))(params, batch)
  scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
  assert len(scans) == 2 and all(s.params["length"] == 4 for s in scans)
  for s in scans:
    shapes = {v.aval.shape for v in s.params["jaxpr"].jaxpr.invars}
    assert (3, 3) in shapes and (12, 3) not in shapes


def test_esam_refuses_accumulation():
  (problem,) = SamSettings(0.1, "esam", micro_batches=2).problems()
  assert problem.startswith("--accumulate_batches is refused with --sam=esam")


# ------------------------------------------------------- a residual network with BatchNorm


def batchnorm_forward():
  """A network with BatchNorm (`helpers.TinyBatchNormNet`) on 8x8x1 images in train mode
  (BatchNorm with the batch's own statistics), the way the image task's BatchNorm problem runs
  the residual networks; squared-error loss."""
  model = TinyBatchNormNet(num_classes=3)
  train_forward = stateful.train_forward(model, lambda x: x)

  def forward(params, model_state, batch, constants, dtype=jnp.float32):
    logits, stats = train_forward(params, model_state["batch_stats"], batch["image"])
    return logits, {"batch_stats": stats}
  output_loss = lambda logits, batch: losses.squared_error(logits, batch["label"])
  return model, forward, output_loss


def as_loss(forward, output_loss, model_state):
  """`(params, batch) -> (loss, new model state)` at `model_state`."""
  def loss(params, batch):
    outputs, new_state = forward(params, model_state, batch, {})
    return output_loss(outputs, batch), new_state
  return loss


@pytest.mark.slow
def test_batchnorm_micro_batches_of_one_batch_repeated_equal_the_whole_batch():
  """BatchNorm normalises each micro-batch with its own statistics, so k = 4 equals k = 1
  exactly when every micro-batch holds the same examples (4 images, each repeated 4 times so
  that every interleaved micro-batch holds all four): then the statistics agree, and the losses,
  parameters, running statistics and λ1 after two SAM steps agree to 1e-5. On 16 distinct
  images the k = 4 loss is the mean of the four micro-batches' own losses."""
  model, forward, output_loss = batchnorm_forward()
  images = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  params, stats = stateful.init_variables(model, jax.random.PRNGKey(0), images)
  repeated = {"image": jnp.repeat(images, 4, axis=0),
              "label": jnp.repeat(jnp.array([0, 1, 2, 1]), 4)}
  results = {}
  for k in (1, 4):
    sam = SamSettings(0.05, micro_batches=k)
    step = jax.jit(lambda state, batch, sam=sam: update.sam_update(
        as_loss(forward, output_loss, state.model_state), optax.sgd(0.05), sam, state, batch))
    state = update.init_state(params, optax.sgd(0.05), {"batch_stats": stats}, sam)
    trained = []
    for _ in range(2):
      state, loss = step(state, repeated)
      trained.append(loss)
    settings = measure.MeasureSettings(
        method=Method(optimizers.OptimizerSettings(step_size=0.05), sam), batch_size=16,
        max_steps=20, tol=1e-6, chunk=16 // k if k > 1 else None, interleave=k > 1)
    run = measure.make_measure(forward, output_loss, settings)
    context = measure.Context(state.model_state, (), state.step, {})
    record, _ = run(state.params, context, repeated, measure.init_state(settings, state.params),
                    jax.random.PRNGKey(2))
    results[k] = (trained, state, record)
  (loss1, state1, rec1), (loss4, state4, rec4) = results[1], results[4]
  np.testing.assert_allclose(loss1, loss4, rtol=1e-5)
  for a, b in zip(jax.tree.leaves((state1.params, state1.model_state)),
                  jax.tree.leaves((state4.params, state4.model_state)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rec1["loss"], rec4["loss"], rtol=1e-5)
  np.testing.assert_allclose(rec1["eigenvalues"][0], rec4["eigenvalues"][0], rtol=1e-5)

  distinct = {"image": jax.random.normal(jax.random.PRNGKey(3), (16, 8, 8, 1)),
              "label": jnp.arange(16) % 3}
  loss_fn = as_loss(forward, output_loss, {"batch_stats": stats})
  split, own, whole = jax.jit(lambda p, b: (
      update.sam_gradients(loss_fn, p, b, SamSettings(0.0, micro_batches=4)).loss,
      jax.lax.map(lambda part: loss_fn(p, part)[0], batching.split(b, 4, interleave=True)),
      loss_fn(p, b)[0]))(params, distinct)
  np.testing.assert_allclose(split, np.mean(own), rtol=1e-5)
  assert abs(float(split) - float(whole)) > 1e-4          # not the loss of the whole batch


# ------------------------------------------------------------------------ MNIST MLP, end to end


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.0, 0.1])
def test_mlp_runs_with_four_micro_batches_equal_the_unsplit_runs(rho, mock_mnist, tmp_path,
                                                                 capsys):
  """image_classification with --accumulate_batches=4 against 1 (SGD, and normalized SAM): the
  training losses of every step and each measurement's loss and λ1 agree to 1e-5."""
  def run(k: int) -> dict:
    raw_path = tmp_path / f"k{k}.pkl"
    args = [f"--tfds_data_dir={mock_mnist}", "--batch_size=8", f"--rho={rho}",
            f"--accumulate_batches={k}", "--max_steps=4", "--measure_every_steps=2",
            "--lanczos_max_steps=40", "--lanczos_tol=1e-7", "--step_size=0.05",
            "--nn_architecture=MLP", "--mlp_width=16", "--mlp_depth=2",
            f"--raw_data_output={raw_path}", "--eigs_curve_output=", "--eigs_se_only_output=",
            "--alignment_curve_output=", "--loss_curve_output="]
    cli.parse_flags(ic.FLAGS, ["image_classification", *args])
    assert ic.main([]) == 0
    with open(raw_path, "rb") as f:
      return pickle.load(f)

  whole, split = run(1), run(4)
  capsys.readouterr()
  np.testing.assert_allclose(split["losses"]["loss"], whole["losses"]["loss"], rtol=1e-5)
  assert len(whole["records"]) == len(split["records"]) >= 2
  for a, b in zip(whole["records"], split["records"], strict=True):
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    np.testing.assert_allclose(b["eigenvalues"][0], a["eigenvalues"][0], rtol=1e-5)
