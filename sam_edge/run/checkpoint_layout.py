"""What a checkpoint's `arrays` item holds (`checkpoints`), and the training state read back.

    {"state": {params, opt_state, step, model_state, sam_state},    the TrainState but `ema`, `best`
     "v_prev": the measurements' warm starts,
     "ema": {"params", "model_state"},          the weights' moving average (`optim.ema`), only
                                                with --ema_decay
     "best": {"params", "model_state"}}         the best evaluation's weights (`run.monitor`),
                                                only with --early_stopping_patience or
                                                --restore_best

Each is an item of its own, present only when the run keeps it, so that a run without them
writes, and restores, exactly the layout of the checkpoints written before they existed (Orbax
restores a tree only into a template of the same structure).
"""

import jax

from sam_edge.optim import update
from sam_edge.pytree import PyTree

OPTIONAL = ("ema", "best")      # TrainState fields kept as items of their own, when not empty


def arrays_of(state: update.TrainState, v_prev: PyTree) -> dict:
  """The `arrays` item of a checkpoint of `state` and the warm starts `v_prev` (module doc)."""
  fields = state._asdict()
  arrays = {"state": fields, "v_prev": v_prev}
  for name in OPTIONAL:
    kept = fields.pop(name)
    if jax.tree.leaves(kept):
      arrays[name] = kept
  return arrays


def state_of(arrays: dict) -> update.TrainState:
  """The TrainState of a checkpoint's `arrays` (`arrays_of`'s inverse)."""
  return update.TrainState(**arrays["state"], **{name: arrays.get(name, {}) for name in OPTIONAL})
