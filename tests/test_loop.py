"""The training loop's bookkeeping: what a record's `seconds` and `time` mean."""

import math
import time

import jax
import jax.numpy as jnp
import optax

from sam_edge.optim import update as optim_update
from sam_edge.run import loop

DEVICE_SECONDS = 0.3


class Pending:
  """A measurement output still being computed: like a jax.Array under asynchronous dispatch, its
  value is there only after `block_until_ready()`, which takes DEVICE_SECONDS of 'device work'."""

  ndim = 0

  def __init__(self, value: float):
    self.value, self.ready = value, False

  def block_until_ready(self) -> "Pending":
    if not self.ready:
      time.sleep(DEVICE_SECONDS)
      self.ready = True
    return self

  def item(self) -> float:
    assert self.ready, "read before the device finished"
    return self.value


def test_seconds_is_the_whole_cost_not_the_dispatch():
  """A measurement's call returns at dispatch, long before its device work is done; a record's
  `seconds` must include that work (it once reported the dispatch alone: 1-4 ms for measurements
  that took half a second)."""
  params = {"w": jnp.ones(3)}

  def measure(state, batch, v0, key):
    record = {name: Pending(1.0) for name in ("two_over_eta", "sam_edge", "grad_norm", "loss",
                                              "g_alignment", "sg_alignment")}
    return {"eigenvalues": [Pending(2.0)], "residuals": [Pending(0.0)], "hvps": Pending(1),
            **record}, v0

  @jax.jit
  def step_fn(state, measure_state, arrays, key):
    return state._replace(step=state.step + 1), measure_state, jnp.float32(1.0)

  components = loop.Components(
      update=lambda state, measure_state, arrays, key, step: step_fn(state, measure_state, arrays,
                                                                     key), measure=measure,
      batch=lambda arrays, key, step: arrays,
      train_arrays={"x": jnp.zeros(2)}, data_key=jax.random.PRNGKey(0),
      measure_key=jax.random.PRNGKey(1))
  progress = loop.Progress()
  settings = loop.LoopSettings(time_limit_s=600, measure_every_steps=1, max_steps=2)
  state = optim_update.init_state(params, optax.sgd(0.1))
  _, _, reason = loop.run_loop(components, state, params, progress, settings, loop.StopFlag(),
                               loop.Hooks(log=lambda line: None))
  assert reason == "max_steps" and len(progress.records) == 2
  for record in progress.records:
    assert record["eigenvalues"] == [2.0]
    assert record["seconds"] >= DEVICE_SECONDS, record
  # Measurements are outside training time and inside the loop's elapsed time.
  assert progress.elapsed - progress.train_time >= 2 * DEVICE_SECONDS


def test_losses_stay_equally_long_when_a_key_appears_after_a_resume():
  """A checkpoint written before `train_error` existed: the resumed run's list of it holds NaN
  for the steps before the resume, and the evaluations' means skip those."""
  losses = {"step": [0, 1], "loss": [2.0, 1.5]}
  loop.append_losses(losses, 2, {"loss": 1.0, "train_error": 0.25})
  loop.append_losses(losses, 3, {"loss": 0.5, "train_error": 0.75})
  assert losses["step"] == [0, 1, 2, 3] and losses["loss"] == [2.0, 1.5, 1.0, 0.5]
  assert math.isnan(losses["train_error"][0]) and math.isnan(losses["train_error"][1])
  assert losses["train_error"][2:] == [0.25, 0.75]
