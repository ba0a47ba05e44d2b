"""Every problem with the flags, one line each naming its flag, found before anything is
loaded or compiled. Each flag's own range is its option's declared check (`options.Option.check`:
the shared flags', the tables' and the task's), the requested curvature kinds are checked by the
registry; here the rest, the problems between flags.
"""

import math
import os
from typing import Any

from sam_edge import errors, options, records
from sam_edge.cli import flags as cli_flags
from sam_edge.cli.flags import flag_values
from sam_edge.curvature import registry
from sam_edge.optim import optimizers, sam, training_options
from sam_edge.tasks.task import Task

# Flags that may change between a checkpointed run and its resumption.
RESUMABLE_CHANGES = ("time_limit_in_hours", "max_steps", "resume", "checkpoint_dir",
                     "checkpoint_every_minutes", "tfds_data_dir", "manual_dir", "tensorboard_dir",
                     "coordinator_address", "process_id", "compilation_cache_dir",
                     "data_workers")      # the stream's batches do not depend on its workers
# The flags whose value fixes the architecture: an --init_params file whose config says otherwise
# is refused.
ARCHITECTURE_FLAGS = ("nn_architecture",)


def common_problems(f: Any, task: Task) -> list[str]:
  """Every problem with the flags of the entry point `task` but the task's own cross-flag ones
  (`Task.problems`); empty if none."""
  values = flag_values(f)
  p = method_problems(f, values, task)
  if not 1 <= f.num_principal_components <= (f.lanczos_max_steps if f.eigensolver == "lanczos"
                                             else math.inf):
    p.append(f"--num_principal_components must be between 1 and --lanczos_max_steps "
             f"({f.lanczos_max_steps}), got {f.num_principal_components}")
  p += (schedule_problems(f) + group_problems(f) + accumulate_problems(f) + device_problems(f)
        + tracking_problems(f))
  p += registry.problems(registry.requested(values))
  return p + output_problems(f) + checkpoint_problems(f)


def schedule_problems(f: Any) -> list[str]:
  """The step-size schedule's flags and those that evaluations drive: the plateau schedule,
  early stopping, --restore_best."""
  p: list[str] = []
  if f.lr_schedule in ("cosine", "step") and f.max_steps is None:
    p.append(f"--lr_schedule={f.lr_schedule} needs --max_steps (the schedule's length)")
  try:
    if not all(0 <= float(b) <= 1 for b in f.lr_step_boundaries):
      p.append(f"--lr_step_boundaries must be fractions in [0, 1], got {f.lr_step_boundaries}")
  except ValueError:
    p.append(f"--lr_step_boundaries must be numbers, got {f.lr_step_boundaries}")
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


def _measured(f: Any, name: str) -> Any:
  """--measure_examples or --measure_chunk when given and in range (else None)."""
  value = f[name].value
  return value if value is not None and value >= 1 else None


def group_problems(f: Any) -> list[str]:
  """m-sharpness: the group size divides the batch and every measured set."""
  m = f.sam_group_size
  if m is None or m < 1:                   # the latter: the method's problem (`method_problems`)
    return []
  if f.batch_size >= 1 and f.batch_size % m:
    return [f"--sam_group_size={m} does not divide --batch_size={f.batch_size}"]
  # a measurement takes SAM's gradient on its set, or on each chunk of it, in groups
  return [f"--sam_group_size={m} does not divide --{name}={n}"
          for name in ("measure_examples", "measure_chunk") if (n := _measured(f, name)) and n % m]


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
  if (n := _measured(f, "measure_examples")) and n % micro:
    p.append(f"--measure_examples={n} is not a whole number of micro-batches of "
             f"{micro} examples (--batch_size/--accumulate_batches)")
  return p


def method_problems(f: Any, values: dict, task: Task) -> list[str]:
  """The method's own problems (`optim.method.Method.problems`: the optimizer's and the SAM
  variant's values, alone and together), then every other flag's declared check (the shared
  flags', the other optimizers' and variants', the curvature kinds', the task's)."""
  from sam_edge.cli import config  # pylint: disable=import-outside-toplevel  (imports jax)
  method = config.method(values)
  p = method.problems()
  own = {*method.optimizer.values, *method.sam.values, optimizers.WEIGHT_DECAY.name,
         training_options.CLIP_GRAD_NORM.name}
  p += options.problems(tuple(o for _, o in cli_flags.entry_options(task) if o.name not in own),
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
  chunk, measured = _measured(f, "measure_chunk"), f.measure_examples or f.batch_size
  if chunk and measured >= 1 and measured % chunk:
    p.append(f"--measure_chunk={chunk} does not divide the {measured} measured examples "
             "(--measure_examples, else --batch_size)")
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
  if f.tensorboard_dir:
    reason = records.folder_problem(f.tensorboard_dir)
    if reason:
      p.append(f"--tensorboard_dir={f.tensorboard_dir}: {reason}")
  return p


def checkpoint_problems(f: Any) -> list[str]:
  """Whether --checkpoint_dir can be used, and --resume with it."""
  if not f.checkpoint_dir:
    return ["--resume needs --checkpoint_dir"] if f.resume else []
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


def init_params_problems(f: Any, task: str) -> list[str]:
  """--init_params for the entry point `task`: the file (or the run folder's file) exists, its
  meta is sound, and the same entry point wrote it for the same architecture. Only its meta is
  read here (`params_file.read_header`: its config and its own checksum); the run reads the
  arrays, checks their checksums and merges them (`run.init_params`), and refuses then a file
  that shares no parameter array with the network."""
  given = f.init_params
  if not given:
    return []
  from sam_edge.run import params_file, run_folder  # pylint: disable=import-outside-toplevel
  try:
    header = params_file.read_header(run_folder.params_path(given))
  except errors.InputError as e:
    return [f"--init_params: {e}"]
  if header.task != task:
    return [f"--init_params={given}: written by {header.task}, not {task}: the parameters of "
            "another task"]
  return [f"--init_params={given}: holds a --{flag}={header.config[flag]} network, not "
          f"--{flag}={f[flag].value}; finetuning keeps the architecture"
          for flag in ARCHITECTURE_FLAGS
          if flag in f and flag in header.config and header.config[flag] != f[flag].value]
