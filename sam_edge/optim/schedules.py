"""Step-size schedules η(s) for step s = 0, 1, 2, ... (optax schedules, evaluable on traced steps).

With base step size η₀, warm-up length W and total steps T:

  warm-up (s < W):  η(s) = η₀ (s + 1) / W        (η₀/W at step 0, η₀ at step W − 1)
  then, for s >= W:
    constant:  η(s) = η₀
    cosine:    η(s) = η₀ · ½ (1 + cos(π min(s − W, T − W) / (T − W)))     (0 from step T on)
    step:      η(s) = η₀ · factor^#{i : s >= B_i},  B_i = ⌊b_i T + ½⌋      (b_i: `boundaries`)

The warm-up starts at η₀/W rather than 0 so that every step moves the weights and 2/η and the
SAM-edge are finite at every step, step 0 included. The step boundaries B_i are absolute steps
(fractions of T, warm-up included, rounded to the nearest step); a boundary inside the warm-up
takes effect when the warm-up ends. Without warm-up, ``constant`` returns η₀ itself at every
step, so ``optax.sgd(make_schedule("constant", η))`` takes bitwise the steps of ``optax.sgd(η)``.
"""

from typing import Optional

import jax.numpy as jnp
import optax

KINDS = ("constant", "cosine", "step")


def _boundary_steps(boundaries: tuple[float, ...], total_steps: int) -> list[int]:
  """B_i = ⌊b_i T + ½⌋ for each fraction b_i in [0, 1]."""
  steps = []
  for b in boundaries:
    if not 0 <= b <= 1:
      raise ValueError(f"step-schedule boundaries are fractions of total_steps in [0, 1], got {b}")
    steps.append(int(b * total_steps + 0.5))
  return steps


def _check(kind: str, base_lr: float, warmup_steps: int, total_steps: Optional[int]) -> None:
  """ValueError for an unknown kind, a base step size <= 0, W < 0, or a missing or too small T
  (the checks every kind shares)."""
  if kind not in KINDS:
    raise ValueError(f"Unknown schedule {kind!r}; expected one of {KINDS}")
  if not base_lr > 0:
    raise ValueError(f"the base step size must be positive, got {base_lr}")
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
  if kind != "constant":
    if total_steps is None:
      raise ValueError(f"the {kind} schedule needs total_steps")
    if total_steps < 1:
      raise ValueError(f"total_steps must be >= 1, got {total_steps}")


def _main_schedule(kind: str, base_lr: float, warmup_steps: int, total_steps: Optional[int],
                   step_rule: tuple[tuple[float, ...], float]) -> optax.Schedule:
  """The schedule after the warm-up, counting from W; `step_rule` = (boundaries, factor) of
  "step"."""
  if kind == "constant":
    return optax.constant_schedule(base_lr)
  if kind == "cosine":
    if total_steps <= warmup_steps:
      raise ValueError(f"the cosine schedule needs total_steps ({total_steps}) > warmup_steps "
                       f"({warmup_steps})")
    return optax.cosine_decay_schedule(base_lr, total_steps - warmup_steps)
  boundaries, factor = step_rule
  if not factor > 0:
    raise ValueError(f"the step schedule's factor must be positive, got {factor}")
  scales: dict[int, float] = {}
  for b in _boundary_steps(boundaries, total_steps):
    shifted = max(b - warmup_steps, 0)          # the main schedule starts counting at W
    scales[shifted] = scales.get(shifted, 1.0) * factor
  return optax.piecewise_constant_schedule(base_lr, scales)


def make_schedule(kind: str, base_lr: float, *, warmup_steps: int = 0,
                  total_steps: int | None = None, boundaries: tuple[float, ...] = (0.5, 0.75),
                  factor: float = 0.1) -> optax.Schedule:
  """The schedule ``s -> η(s)`` of the module docstring (``s`` an int or a traced int array).

  ``kind`` is "constant", "cosine" or "step"; ``base_lr`` is η₀ > 0 and ``warmup_steps`` W >= 0
  (0: no warm-up). ``total_steps`` T is required for "cosine" (T > W) and "step" (T >= 1) and
  ignored by "constant". "step" multiplies by ``factor`` (> 0) at the fractions b_i of T in
  ``boundaries``. Raises ValueError for an unknown kind, a missing or too small ``total_steps``,
  or a value out of range.
  """
  _check(kind, base_lr, warmup_steps, total_steps)
  main = _main_schedule(kind, base_lr, warmup_steps, total_steps, (tuple(boundaries), factor))
  if warmup_steps == 0:
    return main
  warmup = optax.linear_schedule(base_lr / warmup_steps, base_lr, warmup_steps - 1)
  return optax.join_schedules([warmup, main], [warmup_steps])


def extremes(kind: str, base_lr: float, *, warmup_steps: int = 0,
             total_steps: int | None = None, boundaries: tuple[float, ...] = (0.5, 0.75),
             factor: float = 0.1) -> tuple[float, float]:
  """(η_min, η_max), the smallest and largest step size of the schedule over all steps s >= 0
  (Python floats): η₀/W at the warm-up's first step, 0 for cosine (its value from step T on),
  η₀·factor^i after the i-th step boundary."""
  values = [base_lr] + ([base_lr / warmup_steps] if warmup_steps else [])
  if kind == "cosine":
    values.append(0.0)
  elif kind == "step":
    values += [base_lr * factor ** (i + 1)
               for i in range(len(_boundary_steps(tuple(boundaries), total_steps or 0)))]
  return min(values), max(values)


def step_size_at(learning_rate, step):
  """η of the update taken at `step` (0-based): `learning_rate(step)` for a schedule, else η.

  optax's `scale_by_schedule` evaluates the schedule at its own count, the number of updates
  already applied, which equals the TrainState step of a run started from `init_state`.
  """
  if callable(learning_rate):
    return jnp.asarray(learning_rate(step))
  return jnp.asarray(learning_rate)
