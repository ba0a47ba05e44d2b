"""What evaluations decide: the plateau schedule's step size, early stopping and the best
evaluation, each a pure function of the monitored losses m_1, m_2, ... of the evaluations so far
(`validation_loss`, or `test_loss` for a run without a validation split).

Plateau (`--lr_schedule=plateau`, Keras's ReduceLROnPlateau as SAM-TF uses it: factor 0.5,
patience 3): walking the evaluations in order with best = +∞ and wait = 0,

  m_i < best − MIN_DELTA  ->  best = m_i, wait = 0
  otherwise               ->  wait += 1; if wait ≥ patience: k += 1, wait = 0

and η = η_0 · factor^k after evaluation i. MIN_DELTA = 1e-4 is Keras's default.

Early stopping (`--early_stopping_patience`, Keras's EarlyStopping as SAM-TF uses it: patience 10,
min_delta 0): the run stops after the evaluation i where i − best_i ≥ patience, best_i the first
evaluation with the least m (an improvement must be strict). With `--restore_best` the run's final
parameters are those of evaluation best_i, whether or not it stopped early.

Because each is a function of the evaluations, which checkpoints keep, a resumed run decides
exactly as an uninterrupted one.
"""

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

MIN_DELTA = 1e-4
VALIDATION, TEST = "validation_loss", "test_loss"


def monitored_key(evaluation: dict) -> str:
  """The loss the decisions follow: the validation loss when the run has a validation split."""
  return VALIDATION if VALIDATION in evaluation else TEST


def monitored(evaluations: Sequence[dict]) -> tuple[list[int], list[float]]:
  """(their indices, m_1, m_2, ...): the monitored loss of each evaluation after training began
  (the one at step 0 sees the initial parameters, which Keras's callbacks never see; NaN counts
  as no improvement)."""
  kept = [(i, float(e[monitored_key(e)])) for i, e in enumerate(evaluations) if e["step"] > 0]
  return [i for i, _ in kept], [m for _, m in kept]


def reductions(values: Sequence[float], patience: int) -> int:
  """k, the plateau schedule's reductions after `values` (module doc)."""
  best, wait, k = math.inf, 0, 0
  for m in values:
    if m < best - MIN_DELTA:
      best, wait = m, 0
      continue
    wait += 1
    if wait >= patience:
      k, wait = k + 1, 0
  return k


def best_index(values: Sequence[float]) -> Optional[int]:
  """The first evaluation with the least monitored loss (None before any finite one)."""
  finite = [(m, i) for i, m in enumerate(values) if math.isfinite(m)]
  return min(finite)[1] if finite else None


def stop_early(values: Sequence[float], patience: int) -> bool:
  """Whether the last evaluation is `patience` or more evaluations past the best one."""
  best = best_index(values)
  return bool(values) and len(values) - 1 - (-1 if best is None else best) >= patience


@dataclasses.dataclass(frozen=True)
class MonitorSettings:
  """What the evaluations drive (module doc); the default drives nothing."""
  plateau: Optional[tuple[float, int]] = None      # (factor, patience) of --lr_schedule=plateau
  early_stopping_patience: Optional[int] = None
  restore_best: bool = False

  @property
  def keeps_best(self) -> bool:
    """Whether the run keeps the best evaluation's weights (in `TrainState.best`)."""
    return self.early_stopping_patience is not None or self.restore_best

  @property
  def active(self) -> bool:
    return self.plateau is not None or self.keeps_best


def decide(settings: MonitorSettings, state: Any, evaluations: Sequence[dict],
           log: Callable[[str], None]) -> tuple[Any, Optional[str]]:
  """After an evaluation (the last of `evaluations`, of `state`'s weights): the state with the
  plateau scale it now has and, when the evaluation is the best so far, its weights as
  `state.best` (copies); and "early_stopping" when the run must stop, else None."""
  from sam_edge.optim import ema, plateau  # pylint: disable=import-outside-toplevel  (jax)
  _, values = monitored(evaluations)
  if not values:
    return state, None
  key = monitored_key(evaluations[-1])
  if settings.plateau is not None:
    factor, patience = settings.plateau
    k = reductions(values, patience)
    if float(plateau.scale_of(state.opt_state)) != float(np.float32(factor ** k)):
      state = state._replace(opt_state=plateau.with_scale(state.opt_state, factor ** k))
      log(f"plateau: no better {key} for {patience} evaluations: step size × {factor:g} "
          f"(× {factor ** k:g} in all)")
  if settings.keeps_best and best_index(values) == len(values) - 1:
    state = state._replace(best=ema.init(state.params, state.model_state))
  if (settings.early_stopping_patience is not None
      and stop_early(values, settings.early_stopping_patience)):
    log(f"early stopping: no better {key} for {settings.early_stopping_patience} evaluations")
    return state, "early_stopping"
  return state, None


def finish(settings: MonitorSettings, state: Any, evaluations: Sequence[dict],
           log: Callable[[str], None]) -> tuple[Any, dict]:
  """At the end of a run: the state, with the best evaluation's weights as its parameters and
  model state under --restore_best, and what `final` records of it (`best_evaluation`:
  {"index", "step", "monitored", "value"}, or None before any; with "restored": True when its
  weights became the final ones)."""
  if not settings.keeps_best:
    return state, {}
  indices, values = monitored(evaluations)
  i = best_index(values)
  best = None if i is None else {"index": indices[i], "step": evaluations[indices[i]]["step"],
                                 "monitored": monitored_key(evaluations[indices[i]]),
                                 "value": values[i]}
  if settings.restore_best and best is not None:
    best = {**best, "restored": True}
    state = state._replace(params=state.best["params"], model_state=state.best["model_state"])
    log(f"--restore_best: the final parameters are those of evaluation {best['index']} (step "
        f"{best['step']}, {best['monitored']} {best['value']:.6g})")
  return state, {"best_evaluation": best}


def followed(settings: MonitorSettings, held_out: dict) -> Optional[str]:
  """The warning line of a run whose decisions follow the test loss (no validation split)."""
  if settings.active and "validation" not in held_out:
    return ("warning: the plateau schedule, early stopping and --restore_best follow the test "
            "loss: this run has no validation split (--validation_fraction)")
  return None
