"""The decisions evaluations drive (run.monitor), by hand against Keras's rules."""

import math

from sam_edge.run import monitor


def test_plateau_reduces_after_patience_evaluations_without_improvement():
  # best 1.0 at i=0; 1.0 and 0.99995 are no improvement (min_delta 1e-4); the third is a wait of 3
  values = [1.0, 1.0, 0.99995, 1.2, 0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7]
  assert [monitor.reductions(values[:n], patience=3) for n in range(1, 12)] == [
      0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3]


def test_early_stopping_counts_evaluations_since_the_first_best():
  values = [3.0, 2.0, 2.0, 2.5, 2.1]
  assert monitor.best_index(values) == 1
  assert not monitor.stop_early(values[:4], patience=3)
  assert monitor.stop_early(values, patience=3)
  assert monitor.best_index([math.nan, 1.0]) == 1 and monitor.best_index([math.nan]) is None


def test_the_validation_loss_is_followed_when_there_is_one_and_step_0_is_left_out():
  evals = [{"step": 0, "test_loss": 9.0, "validation_loss": 0.1},
           {"step": 5, "test_loss": 1.0, "validation_loss": 2.0},
           {"step": 10, "test_loss": 2.0, "validation_loss": 1.0}]
  assert monitor.monitored(evals) == ([1, 2], [2.0, 1.0])
  assert monitor.monitored([{k: v for k, v in e.items() if k != "validation_loss"}
                            for e in evals]) == ([1, 2], [1.0, 2.0])


def test_the_plateau_scale_multiplies_the_step_and_the_step_size_measurements_see():
  import jax.numpy as jnp
  import numpy as np

  from sam_edge.optim import plateau
  from sam_edge.optim.optimizers import OptimizerSettings
  o = OptimizerSettings(name="momentum", step_size=0.1, hyper={"momentum": 0.9},
                        schedule="plateau")
  tx = o.make()
  params, grad = {"w": jnp.ones(3)}, {"w": jnp.array([1.0, 2.0, 3.0])}
  state = tx.init(params)
  full, _ = tx.update(grad, state, params)
  halved = plateau.with_scale(state, 0.5)
  half, kept = tx.update(grad, halved, params)
  np.testing.assert_allclose(half["w"], 0.5 * full["w"])
  np.testing.assert_allclose(full["w"], -0.1 * grad["w"])
  assert float(plateau.scale_of(kept)) == 0.5
  assert float(o.step_size_now(halved, 7)) == np.float32(0.05)
  assert float(OptimizerSettings(step_size=0.1).step_size_now(state, 7)) == np.float32(0.1)
