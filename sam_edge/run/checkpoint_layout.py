"""What a checkpoint's `arrays` item holds (`checkpoints`), and the training state read back.

    {"state": {params, opt_state, step, model_state, sam_state},    the TrainState but `ema`
     "v_prev": the measurements' warm starts,
     "ema": {"params", "model_state"}}          the weights' moving average (`optim.ema`), only
                                                with --ema_decay

The average is an item of its own, present only when the run keeps one, so that a run without
--ema_decay writes, and restores, exactly the layout of the checkpoints written before the
average existed (Orbax restores a tree only into a template of the same structure).
"""

import jax

from sam_edge.optim import update
from sam_edge.pytree import PyTree


def arrays_of(state: update.TrainState, v_prev: PyTree) -> dict:
  """The `arrays` item of a checkpoint of `state` and the warm starts `v_prev` (module doc)."""
  fields = state._asdict()
  average = fields.pop("ema")
  arrays = {"state": fields, "v_prev": v_prev}
  if jax.tree.leaves(average):
    arrays["ema"] = average
  return arrays


def state_of(arrays: dict) -> update.TrainState:
  """The TrainState of a checkpoint's `arrays` (`arrays_of`'s inverse)."""
  return update.TrainState(**arrays["state"], ema=arrays.get("ema", {}))
