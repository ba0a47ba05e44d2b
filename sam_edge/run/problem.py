"""What a task hands a run: its network as a forward pass and a loss of the outputs, the data,
the initial parameters and state, and its test metric.

The forward pass `forward(params, model_state, batch, constants, dtype) -> (outputs, new
model_state)` computes in `dtype` (float32, or bfloat16 for `--compute_dtype`) and returns float32
outputs; `model_state` is what the training step changes besides the parameters (BatchNorm
statistics; `{}` if none) and `constants` what it never changes (e.g. the linearized model's
expansion point; `{}` if none); both are jit arguments, never baked into a compiled function. The
training loss is `output_loss(outputs, batch)`; measurements take the same two parts in float32
(`curvature.objective.Objective`), so the Hessian they measure is that of the loss the step
follows, and the Gauss–Newton kind can split it.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from sam_edge.curvature.objective import Forward, OutputLoss
from sam_edge.models import losses
from sam_edge.optim.oracle import LossFn
from sam_edge.pytree import PyTree


@dataclasses.dataclass(frozen=True)
class Problem:
  """A task's contribution to a run (module doc)."""
  forward: Forward
  output_loss: OutputLoss
  params: PyTree                                       # initial parameters
  train_arrays: dict                    # host arrays, leading axis = examples (placed by the run)
  evaluate: Callable[[PyTree, PyTree, PyTree], dict]
  # (params, model_state, constants) -> {"test_error": x}
  report: Callable[[dict], str]                        # evaluation -> "Test error: x"
  description: dict = dataclasses.field(default_factory=dict)   # e.g. parameter count
  model_state: PyTree = dataclasses.field(default_factory=dict)
  constants: PyTree = dataclasses.field(default_factory=dict)
  augment: Optional[Callable[[PyTree, jax.Array, jax.Array], PyTree]] = None
  # (batch, data_key, step) -> the training batch (e.g. random crops); measurements see the
  # batch as it is
  compute_dtype: Any = jnp.float32                     # the update's forward pass
  order: Any = None          # `data.order`: which examples each step takes (None: shuffled)
  predict: Optional[Callable[[PyTree, PyTree, PyTree, PyTree], jax.Array]] = None
  # (params, model_state, constants, batch) -> float32 outputs in evaluation mode (BatchNorm
  # with the running statistics of `model_state`): what the test error sees; between-run
  # metrics (`studies.trained`) use it. None: the task offers none
  batch_error: Optional[Callable[[Any, PyTree], jax.Array]] = None
  # (outputs, batch) -> the fraction of the batch's predictions that are wrong (images: examples,
  # text: next characters); the training error evaluations report. None: the task has none
  evaluate_each: Optional[Callable[[list[tuple[PyTree, PyTree]], PyTree], list[dict]]] = None
  # ([(params, model_state), ...], constants) -> `evaluate` of each network from one pass over
  # the held-out data (a streamed split decoded once for w and the moving average; used only with
  # --ema_decay, so replacing `evaluate` alone still sees every plain evaluation). None:
  # `evaluate` each in turn
  held_out: dict = dataclasses.field(default_factory=dict)
  # {split: host arrays} of the splits training never sees ("test"; "validation" where the run
  # has one), each with the training set's keys: what post-hoc evaluations (`studies.evaluation`)
  # and the ensemble error read. {}: the task offers none
  stream: Any = None
  # `data.stream.TrainingStream`: the training batches are streamed (`run.streamed`), and
  # `train_arrays` holds only the fixed measured set. None: the batches come from train_arrays

  def loss_fn(self, model_state: PyTree, constants: PyTree, dtype: Any = jnp.float32) -> LossFn:
    """`(params, batch) -> (L, new model_state)` in `dtype` at `model_state` and `constants`: the
    loss a step follows (`optim.oracle`)."""
    def loss(params, batch):
      outputs, new_state = self.forward(params, model_state, batch, constants, dtype)
      return self.output_loss(outputs, batch), new_state
    return loss

  def example_loss_fn(self, model_state: PyTree, constants: PyTree, dtype: Any = jnp.float32
                      ) -> Callable[[PyTree, PyTree], jax.Array]:
    """`(params, batch) -> [B]`: each example's loss in `dtype`, from one forward pass on the
    whole batch (`losses.per_example`; ESAM's selection)."""
    def example_losses(params, batch):
      outputs, _ = self.forward(params, model_state, batch, constants, dtype)
      return losses.per_example(self.output_loss, outputs, batch)
    return example_losses


def keys(seed: int) -> dict[str, jax.Array]:
  """The run's independent PRNG streams, all from --seed."""
  init, data, measure_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  return {"init": init, "data": data, "measure": measure_key}
