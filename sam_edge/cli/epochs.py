"""Budgets in epochs: --num_epochs, --eval_every_epochs and --warmup_epochs become the step flags
they stand for, once the training set's size is known (before any check that reads the steps).

With E = ⌊N / B⌋ steps per epoch (N training examples after the validation split and the mini
sets, B the batch size; the shuffled order's epoch):

  --max_steps = num_epochs · E,   --eval_every_steps = max(1, round(eval_every_epochs · E)),
  --warmup_steps = round(warmup_epochs · E),   --lr_step_boundaries = lr_step_epochs / num_epochs

(a boundary e falls at step ⌊(e/num_epochs)·num_epochs·E + ½⌋ = e·E).

The step flags are set on the flag values, so the run's config records both what was asked (the
epoch flags) and what ran (the steps); `--lr_step_boundaries`, being fractions of --max_steps,
fall at the same fractions of the epoch budget.
"""

import math
from typing import Any, Callable, Optional

from sam_edge.cli.flags import AT_LEAST_1, NOT_NEGATIVE
from sam_edge.tasks.task import check

PAIRS = (("num_epochs", "max_steps"), ("eval_every_epochs", "eval_every_steps"),
         ("warmup_epochs", "warmup_steps"), ("lr_step_epochs", "lr_step_boundaries"))
RANGES = (("num_epochs", AT_LEAST_1), ("eval_every_epochs", check(lambda x: x > 0, "must be > 0")),
          ("warmup_epochs", NOT_NEGATIVE))                      # NaN fails the last two
FINITE = ("eval_every_epochs", "warmup_epochs")                  # ∞ epochs are no step count


def _range_problems(f: Any) -> list[str]:
  p = [f"--{name} {reason}, got {f[name].value}" for name, ok in RANGES
       if f[name].value is not None and (reason := ok(f[name].value))]
  p += [f"--{name} must be finite, got {f[name].value}" for name in FINITE
        if f[name].value == math.inf]
  p += [f"--{epochs} and --{steps} both given: use one" for epochs, steps in PAIRS
        if f[epochs].value not in (None, []) and f[steps].present]
  return p + _boundary_problems(f)


def _boundary_problems(f: Any) -> list[str]:
  if not f.lr_step_epochs:
    return []
  if f.num_epochs is None:
    return ["--lr_step_epochs needs --num_epochs (the boundaries are fractions of it)"]
  try:
    values = [float(e) for e in f.lr_step_epochs]
  except ValueError:
    return [f"--lr_step_epochs must be numbers, got {f.lr_step_epochs}"]
  if not all(0 <= e <= f.num_epochs for e in values):
    return [f"--lr_step_epochs must lie in [0, --num_epochs={f.num_epochs}], got "
            f"{f.lr_step_epochs}"]
  return []


def resolve(f: Any, train_examples: Callable[[Any], Optional[int]]) -> tuple[list[str], bool]:
  """Sets the step flags from the epoch flags (module doc). Returns (problems, whether the
  training set's size was known): the problems instead when the epoch flags are out of range or
  clash with their step flags, or the size (`train_examples(f)`, None when it cannot be known
  before loading, e.g. for a corpus that cannot be read) is unknown; that last one is for the
  caller to say only when nothing else explains it."""
  asked = [epochs for epochs, _ in PAIRS if f[epochs].value not in (None, [])]
  if not asked:
    return [], True
  p = _range_problems(f)
  if p or f.batch_size < 1:
    return p, True
  n = train_examples(f)
  if n is None:
    return [f"--{asked[0]} needs the training set's size before loading, which is unknown "
            "for these flags; use the step flags"], False
  per_epoch = n // f.batch_size
  if per_epoch < 1:
    return [f"--{asked[0]}: the {n} training examples make no whole batch of --batch_size="
            f"{f.batch_size}"], True
  if f.num_epochs is not None:
    f.max_steps = f.num_epochs * per_epoch
  if f.eval_every_epochs is not None:
    f.eval_every_steps = max(1, round(f.eval_every_epochs * per_epoch))
  if f.warmup_epochs is not None:
    f.warmup_steps = round(f.warmup_epochs * per_epoch)
  if f.lr_step_epochs:
    f.lr_step_boundaries = [repr(float(e) / f.num_epochs) for e in f.lr_step_epochs]
  return [], True
