"""Every problem with the shared flags, one line each naming its flag, found before anything is
loaded or compiled. The tables' options are checked by their own declared checks
(`options.Option.check`), the requested curvature kinds by the registry.
"""

import math
import os
from typing import Any

from sam_edge import options, records
from sam_edge.cli import flags as cli_flags
from sam_edge.cli.flags import flag_values
from sam_edge.curvature import registry
from sam_edge.optim import optimizers, sam, training_options

MAX_LANCZOS_STEPS = 500
# Flags that may change between a checkpointed run and its resumption.
RESUMABLE_CHANGES = ("time_limit_in_hours", "max_steps", "resume", "checkpoint_dir",
                     "checkpoint_every_minutes", "tfds_data_dir", "manual_dir", "tensorboard_dir",
                     "coordinator_address", "process_id", "compilation_cache_dir",
                     "data_workers")      # the stream's batches do not depend on its workers


def _finite(x: Any) -> bool:
  return x is not None and math.isfinite(x)


def common_problems(f: Any) -> list[str]:
  """Every problem with the shared flags (empty if none)."""
  p: list[str] = []
  checks = [
      (_finite(f.step_size) and f.step_size > 0,
       f"--step_size must be a finite number > 0, got {f.step_size}"),
      (f.batch_size >= 1, f"--batch_size must be at least 1, got {f.batch_size}"),
      (_finite(f.time_limit_in_hours) and f.time_limit_in_hours > 0,
       f"--time_limit_in_hours must be > 0, got {f.time_limit_in_hours}"),
      (f.hessian_check_gap is None or (_finite(f.hessian_check_gap) and f.hessian_check_gap >= 0),
       f"--hessian_check_gap must be >= 0 hours, got {f.hessian_check_gap}"),
      (f.measure_every_steps is None or f.measure_every_steps >= 1,
       f"--measure_every_steps must be at least 1, got {f.measure_every_steps}"),
      (f.max_steps is None or f.max_steps >= 0, f"--max_steps must be >= 0, got {f.max_steps}"),
      (f.lanczos_max_steps >= 1,
       f"--lanczos_max_steps must be at least 1, got {f.lanczos_max_steps}"),
      (_finite(f.lanczos_tol) and f.lanczos_tol > 0,
       f"--lanczos_tol must be > 0, got {f.lanczos_tol}"),
      (1 <= f.num_principal_components <= (f.lanczos_max_steps if f.eigensolver == "lanczos"
                                            else math.inf),
       f"--num_principal_components must be between 1 and --lanczos_max_steps "
       f"({f.lanczos_max_steps}), got {f.num_principal_components}"),
      (f.lanczos_max_steps <= MAX_LANCZOS_STEPS,
       f"--lanczos_max_steps must be at most {MAX_LANCZOS_STEPS} (the basis is kept whole), "
       f"got {f.lanczos_max_steps}"),
      (0 <= f.seed < 2**32, f"--seed must be between 0 and 2**32 - 1, got {f.seed}"),
      (f.eval_every_steps is None or f.eval_every_steps >= 1,
       f"--eval_every_steps must be at least 1, got {f.eval_every_steps}"),
      (_finite(f.validation_fraction) and 0 <= f.validation_fraction < 1,
       f"--validation_fraction must lie in [0, 1), got {f.validation_fraction}"),
  ]
  p += [message for ok, message in checks if not ok]
  values = flag_values(f)
  p += method_problems(f, values)
  p += (schedule_problems(f) + group_problems(f) + accumulate_problems(f) + device_problems(f)
        + tracking_problems(f))
  p += registry.problems(registry.requested(values))
  p += output_problems(f)
  if f.resume and not f.checkpoint_dir:
    p.append("--resume needs --checkpoint_dir")
  if f.checkpoint_dir:
    p.extend(checkpoint_problems(f))
  return p


def schedule_problems(f: Any) -> list[str]:
  """The step-size schedule's flags."""
  p: list[str] = []
  if f.lr_schedule in ("cosine", "step") and f.max_steps is None:
    p.append(f"--lr_schedule={f.lr_schedule} needs --max_steps (the schedule's length)")
  if f.warmup_steps < 0:
    p.append(f"--warmup_steps must be >= 0, got {f.warmup_steps}")
  try:
    if not all(0 <= float(b) <= 1 for b in f.lr_step_boundaries):
      p.append(f"--lr_step_boundaries must be fractions in [0, 1], got {f.lr_step_boundaries}")
  except ValueError:
    p.append(f"--lr_step_boundaries must be numbers, got {f.lr_step_boundaries}")
  if not (_finite(f.lr_step_factor) and f.lr_step_factor > 0):
    p.append(f"--lr_step_factor must be > 0, got {f.lr_step_factor}")
  return p + monitor_problems(f)


def monitor_problems(f: Any) -> list[str]:
  """The flags that evaluations drive: the plateau schedule, early stopping, --restore_best."""
  p: list[str] = []
  if not (_finite(f.plateau_factor) and 0 < f.plateau_factor < 1):
    p.append(f"--plateau_factor must lie in (0, 1), got {f.plateau_factor}")
  if f.plateau_patience < 1:
    p.append(f"--plateau_patience must be at least 1, got {f.plateau_patience}")
  if f.early_stopping_patience is not None and f.early_stopping_patience < 1:
    p.append(f"--early_stopping_patience must be at least 1, got {f.early_stopping_patience}")
  asked = [flag for flag, on in (("--lr_schedule=plateau", f.lr_schedule == "plateau"),
                                 ("--early_stopping_patience", f.early_stopping_patience),
                                 ("--restore_best", f.restore_best)) if on]
  if asked and not f.eval_every_steps:
    p.append(f"{asked[0]} follows the evaluations: give --eval_every_steps or "
             "--eval_every_epochs")
  if f.lr_schedule == "plateau" and f.sam == "gsam" and f.gsam_rho_schedule:
    p.append("--lr_schedule=plateau with --sam=gsam: GSAM's ρ_t follows a step size known in "
             "advance, which the plateau schedule's is not")
  return p


def tracking_problems(f: Any) -> list[str]:
  """--track_every_step follows the step's own Hessian: the measured loss must be the training
  loss of the step (float32, on the step's batch) of a non-adaptive optimizer."""
  if not f.track_every_step:
    return []
  if f.track_hvps < 1:
    return [f"--track_hvps must be at least 1, got {f.track_hvps}"]
  why = {"--compute_dtype=bfloat16": f.compute_dtype != "float32",
         "--measure_examples": f.measure_examples is not None,
         f"--optimizer={f.optimizer} (its preconditioned sharpness)":
             optimizers.OPTIMIZERS[f.optimizer].preconditioner is not None}
  return [f"--track_every_step is not supported with {name}" for name, bad in why.items() if bad]


def group_problems(f: Any) -> list[str]:
  """m-sharpness: the group size divides the batch and every measured set."""
  m = f.sam_group_size
  if m is None or m < 1:                   # the latter: the method's problem (`method_problems`)
    return []
  if f.batch_size >= 1 and f.batch_size % m:
    return [f"--sam_group_size={m} does not divide --batch_size={f.batch_size}"]
  # a measurement takes SAM's gradient on its set, or on each chunk of it, in groups
  return [f"--sam_group_size={m} does not divide --{name}={f[name].value}"
          for name in ("measure_examples", "measure_chunk")
          if f[name].value is not None and f[name].value >= 1 and f[name].value % m]


def accumulate_problems(f: Any) -> list[str]:
  """--accumulate_batches: it divides the batch, and measurements take its micro-batches."""
  k = f.accumulate_batches
  if k <= 1 or f.batch_size < 1:           # k < 1: the method's problem (`method_problems`)
    return []
  if f.batch_size % k:
    return [f"--accumulate_batches={k} does not divide --batch_size={f.batch_size}"]
  p = []
  micro = f.batch_size // k
  if f.measure_chunk is not None:
    p.append("--measure_chunk does not combine with --accumulate_batches: measurements take the "
             f"training step's micro-batches of {micro} examples one at a time")
  if f.measure_examples is not None and f.measure_examples >= 1 and f.measure_examples % micro:
    p.append(f"--measure_examples={f.measure_examples} is not a whole number of micro-batches of "
             f"{micro} examples (--batch_size/--accumulate_batches)")
  return p


def method_problems(f: Any, values: dict) -> list[str]:
  """The method's own problems (`optim.method.Method.problems`: the optimizer's and the SAM
  variant's values, alone and together), the other optimizers' and variants' options and the
  curvature kinds' (their declared checks); a variant whose step is not defined over parts of
  the batch (ESAM ranks the whole measured batch) takes no --measure_chunk."""
  from sam_edge.cli import config  # pylint: disable=import-outside-toplevel  (imports jax)
  method = config.method(values)
  p = method.problems()
  own = {*method.optimizer.values, *method.sam.values, optimizers.WEIGHT_DECAY.name,
         training_options.CLIP_GRAD_NORM.name}
  p += options.problems(tuple(o for o in cli_flags.table_options() if o.name not in own),
                        values.get)
  variant = sam.SAM_VARIANTS.get(f.sam)
  if variant and not variant.accumulates and f.measure_chunk is not None:
    p.append(f"--measure_chunk does not combine with --sam={f.sam}: its step is defined on the "
             "whole batch only (ESAM ranks the losses of the whole measured batch)")
  return p


def device_problems(f: Any) -> list[str]:
  """The device, host and measured-set flags; reads the device count."""
  import jax  # pylint: disable=import-outside-toplevel  (after jax.distributed started)
  p: list[str] = []
  multi = (f.coordinator_address, f.num_processes, f.process_id)
  if any(x is not None for x in multi) and not all(x is not None for x in multi):
    p.append("--coordinator_address, --num_processes and --process_id go together")
  available = jax.device_count()
  count = f.num_devices if f.num_devices is not None else available
  if f.num_devices is not None and not 1 <= f.num_devices <= available:
    p.append(f"--num_devices must be between 1 and the {available} devices, got {f.num_devices}")
  elif f.batch_size >= 1 and f.batch_size % count:
    p.append(f"--batch_size={f.batch_size} is not divisible by the {count} devices (each "
             "holds an equal share of every batch)")
  elif (f.accumulate_batches > 1 and f.batch_size % f.accumulate_batches == 0
        and (f.batch_size // f.accumulate_batches) % count):
    p.append(f"the micro-batches of {f.batch_size // f.accumulate_batches} examples "
             f"(--batch_size/--accumulate_batches) are not divisible by the {count} devices "
             "(each holds an equal share of every micro-batch)")
  if f.measure_examples is not None and f.measure_examples < 1:
    p.append(f"--measure_examples must be at least 1, got {f.measure_examples}")
  if f.measure_chunk is not None:
    measured = f.measure_examples or f.batch_size
    if f.measure_chunk < 1:
      p.append(f"--measure_chunk must be at least 1, got {f.measure_chunk}")
    elif measured >= 1 and measured % f.measure_chunk:
      p.append(f"--measure_chunk={f.measure_chunk} does not divide the {measured} measured "
               "examples (--measure_examples, else --batch_size)")
  return p


def output_problems(f: Any) -> list[str]:
  """Output paths that cannot be written, that are the same file, or that lie inside the
  checkpoint folder; a TensorBoard folder that cannot be made."""
  p: list[str] = []
  seen: dict[str, str] = {}
  for option in cli_flags.output_options():
    path = f[option.name].value
    if not path:
      continue
    reason = records.check_writable(path)
    if reason:
      p.append(f"--{option.name}={path}: cannot write there: {reason}")
    real = os.path.realpath(path)
    if real in seen:
      p.append(f"--{option.name} and --{seen[real]} are the same file {path}")
    seen.setdefault(real, option.name)
    if f.checkpoint_dir and real.startswith(os.path.realpath(f.checkpoint_dir) + os.sep):
      p.append(f"--{option.name}={path} is inside --checkpoint_dir; keep outputs elsewhere")
  if not (f.checkpoint_every_minutes is None or (_finite(f.checkpoint_every_minutes)
                                                 and f.checkpoint_every_minutes > 0)):
    p.append(f"--checkpoint_every_minutes must be > 0, got {f.checkpoint_every_minutes}")
  if f.tensorboard_dir:
    reason = records.folder_problem(f.tensorboard_dir)
    if reason:
      p.append(f"--tensorboard_dir={f.tensorboard_dir}: {reason}")
  return p


def checkpoint_problems(f: Any) -> list[str]:
  """Whether --checkpoint_dir can be used, and --resume with it."""
  from sam_edge.cli import config  # pylint: disable=import-outside-toplevel  (imports jax)
  from sam_edge.run import checkpoints, locks  # pylint: disable=import-outside-toplevel
  reason = checkpoints.check_checkpoint_dir(f.checkpoint_dir)
  if reason:
    return [f"--checkpoint_dir={f.checkpoint_dir}: {reason}"]
  if os.path.isdir(f.checkpoint_dir):
    reason = locks.problem(f.checkpoint_dir)
    if reason:
      return [f"--checkpoint_dir={f.checkpoint_dir} {reason}"]
  if not checkpoints.has_steps(f.checkpoint_dir):
    return []
  if not f.resume:
    return [f"--checkpoint_dir={f.checkpoint_dir} holds checkpoints of an earlier run: pass "
            "--resume to continue it, or use another folder"]
  sound = checkpoints.newest_sound(f.checkpoint_dir)
  if sound.step is None:
    step, why = sound.skipped[0]
    return [f"--resume: none of the {len(sound.skipped)} checkpoints in {f.checkpoint_dir} can be "
            f"restored (the newest, step {step}: {why})"]
  resumable = RESUMABLE_CHANGES
  if sound.config.get("lr_schedule", "constant") in ("cosine", "step"):
    resumable = tuple(n for n in resumable if n != "max_steps")   # the schedule's length
  outputs = tuple(o.name for o in cli_flags.output_options())
  saved = config.completed({name: f[name].default for name in f}, sound.config)
  differ = checkpoints.config_differences(saved, flag_values(f), ignore=resumable + outputs)
  if differ:
    return [f"--resume: the checkpoint in {f.checkpoint_dir} was written with different flags: "
            + ", ".join(f"--{name} (was {saved.get(name)!r}, now {f[name].value!r})"
                        if name in f else f"--{name}" for name in differ)]
  return []
