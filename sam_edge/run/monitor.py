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

import math
from typing import Optional, Sequence

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


def reductions(values: Sequence[float], patience: int, min_delta: float = MIN_DELTA) -> int:
  """k, the plateau schedule's reductions after `values` (module doc)."""
  best, wait, k = math.inf, 0, 0
  for m in values:
    if m < best - min_delta:
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
  last = len(values) - 1
  return last - (-1 if best is None else best) >= patience if values else False
