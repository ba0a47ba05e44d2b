"""The weights' moving average (--ema_decay): its recursion by hand over three steps of the run's
own training step, and where it is kept: evaluations (`ema_` keys), TensorBoard and the
evaluation figure, parameters files (old files still read) and checkpoints (old layouts still
restore)."""

import collections
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sam_edge.optim import update
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.run import checkpoint_layout, checkpoints, components, loop, params_file
from sam_edge.studies import trained
from tests import test_outputs_doc
from tests.test_training_knobs import ETA, RHO, assert_trees_close, tiny_params, train

# The TrainState before --ema_decay existed: five fields, as checkpoints were written then.
OldTrainState = collections.namedtuple(
    "TrainState", ["params", "opt_state", "step", "model_state", "sam_state"])


def test_the_moving_average_follows_its_recursion_and_changes_no_step(x64):
  """w̄_3 = d³w0 + d²(1−d)w1 + d(1−d)w2 + (1−d)w3, the model state alike; the parameters are
  those of the run without the average, bit for bit."""
  d = 0.8
  method = OptimizerSettings("sgd", ETA)
  problem, states = train(method, 3, rho=RHO, ema_decay=d)
  _, plain = train(method, 3, rho=RHO)
  for part in ("params", "model_state"):
    w = [getattr(s, part) for s in states]
    expected = jax.tree.map(lambda a, b, c, e: d ** 3 * a + d ** 2 * (1 - d) * b
                            + d * (1 - d) * c + (1 - d) * e, *w)
    assert_trees_close(states[-1].ema[part], expected)
  jax.tree.map(np.testing.assert_array_equal, states[-1].params, plain[-1].params)
  assert not plain[-1].ema
  metrics = components.evaluation(problem, states[-1])
  assert set(metrics) == {"test_loss", "test_error", "ema_test_loss", "ema_test_error"}
  assert metrics["ema_test_loss"] == problem.evaluate(
      states[-1].ema["params"], states[-1].ema["model_state"], problem.constants)["test_loss"]
  assert metrics["ema_test_loss"] != metrics["test_loss"]


def test_parameters_files_hold_the_average_and_old_files_read(tmp_path):
  params = {"w": np.arange(3, dtype=np.float32)}
  ema = {"params": {"w": np.ones(3, np.float32)}, "model_state": {}}
  path = tmp_path / "params.npz"
  params_file.write(str(path), "image_classification", 5, {"ema_decay": 0.9}, params, {}, ema=ema)
  t = trained.load(str(path))
  np.testing.assert_array_equal(t.ema["params"]["w"], ema["params"]["w"])
  np.testing.assert_array_equal(t.params["w"], params["w"])
  assert t.ema["model_state"] == {}
  old = tmp_path / "old.npz"
  params_file.write(str(old), "image_classification", 5, {}, params, {})
  assert params_file.read(str(old)).ema is None and trained.load(str(old)).ema is None
  with np.load(path, allow_pickle=False) as npz:
    tree = json.loads(npz["meta"].tobytes())["tree"]
  assert set(tree) == {"params", "model_state", "ema"} and "ema" in test_outputs_doc.documented()


def test_checkpoints_keep_the_average_and_old_checkpoints_restore(tmp_path, monkeypatch):
  """With the average the arrays gain an item "ema"; without it a checkpoint is laid out as
  before the average existed (the state's five fields), and such a checkpoint restores."""
  params = tiny_params(jnp.float32)
  state = update.init_state(params, optax.sgd(0.1), {"mean": jnp.ones(2)}, average=True)
  state = state._replace(ema=jax.tree.map(lambda x: x + 1, state.ema))
  with checkpoints.Checkpointer(str(tmp_path / "a")) as c:
    c.save(state, params, loop.Progress(), {})
    got, _, _, _ = c.restore(state, params)
    raw = c._manager.restore(0)["arrays"]
  assert set(raw) == {"state", "v_prev", "ema"} and "ema" not in raw["state"]
  jax.tree.map(np.testing.assert_array_equal, got, state)
  plain = update.init_state(params, optax.sgd(0.1))
  assert set(checkpoint_layout.arrays_of(plain, params)) == {"state", "v_prev"}
  old_layout = lambda s, v: {"state": OldTrainState(*s[:5]), "v_prev": v}   # as written before
  with monkeypatch.context() as m:
    m.setattr(checkpoint_layout, "arrays_of", old_layout)
    with checkpoints.Checkpointer(str(tmp_path / "old")) as c:
      c.save(plain, params, loop.Progress(), {})
  with checkpoints.Checkpointer(str(tmp_path / "old")) as c:
    got, _, _, _ = c.restore(plain, params)
  assert got.ema == {}
  jax.tree.map(np.testing.assert_array_equal, got, plain)


def test_the_average_s_evaluations_reach_tensorboard_and_the_figure():
  from sam_edge.plots import run as run_plots
  from sam_edge.run import tensorboard
  e = {"step": 0, "time": 0.0, "test_error": 0.5, "test_loss": 1.0, "ema_test_error": 0.25,
       "ema_test_loss": 0.75, "seconds": 0.1}
  assert tensorboard.scalars(e) == {"test/error": 0.5, "test/loss": 1.0, "ema_test/error": 0.25,
                                    "ema_test/loss": 0.75}
  panels = run_plots.evaluation_panels({"evaluations": [e], "losses": {"step": [0],
                                                                       "loss": [2.0]}}, "t")
  drawn = {s.label: s.ys for p in panels for s in p.series}
  assert drawn["test loss of the moving average"] == [0.75]
  assert drawn["test error of the moving average"] == [0.25] and drawn["test error"] == [0.5]
