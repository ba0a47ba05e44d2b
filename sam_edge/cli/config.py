"""The flags' values -> one frozen, typed run config: the whole input of a run.

    config = of_flags(task, fv)                  # after the checks (`main.problems`)
    config = of_values(task, saved["config"])    # a raw pickle's, a checkpoint's, a params file's
    config.problem        # the task's part: data and model (`Task.config`, e.g. ImageConfig)
    config.run            # `run.settings.RunSettings`: the method (built once), measurement, loop,
                          # monitor, outputs, where the state is kept
    config.values         # {flag: value} it was made from: what the outputs store

`of_values` fills in the entry point's defaults for flags a file written before them lacks (and,
for flags whose default changed what a run does, the value that reproduces the old run), so an old
pickle or checkpoint rebuilds its run. Below `cli/`, nothing reads the flags: each part of the
run takes its part of this config.
"""

import dataclasses
import math
from typing import Any, Mapping, Optional

from sam_edge.cli import flags as cli_flags
from sam_edge.cli.flags import flag_values, task_flags
from sam_edge.curvature import registry
from sam_edge.curvature.measure import MeasureSettings
from sam_edge.optim import optimizers, sam
from sam_edge.optim.method import Method
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings
from sam_edge.run.loop import LoopSettings
from sam_edge.run.monitor import MonitorSettings
from sam_edge.run.settings import RunSettings
from sam_edge.tasks.task import Task, Values

# The values that reproduce what runs did before these flags existed (module doc).
ADDED_FLAGS = {"batch_order": "shuffled", "test_batches": "all"}


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One run's whole input (module doc)."""
  task: str
  values: Mapping[str, Any]
  problem: Any
  run: RunSettings


def method(v: Values) -> Method:
  """The optimizer (its options, weight decay, schedule, clipping) and the SAM variant (its
  options, ρ, group size, perturbed parameters, micro-batches) as one object, built once."""
  entry = optimizers.OPTIMIZERS.get(v["optimizer"])
  variant = sam.SAM_VARIANTS.get(v["sam"])
  optimizer = OptimizerSettings(
      name=v["optimizer"], step_size=v["step_size"],
      hyper={o.name: v[o.name] for o in entry.options} if entry else (),
      weight_decay=v["weight_decay"], schedule=v["lr_schedule"], warmup_steps=v["warmup_steps"],
      total_steps=v["max_steps"], boundaries=tuple(_number(b) for b in v["lr_step_boundaries"]),
      factor=v["lr_step_factor"], decay_in_loss=v["weight_decay_in_loss"],
      exempt_norm=v["no_weight_decay_on_norm"], clip=v["clip_grad_norm"])
  return Method.of(optimizer, SamSettings(
      rho=v["rho"], kind=v["sam"], group_size=v["sam_group_size"],
      hyper={o.name: v[o.name] for o in variant.options} if variant else (),
      perturbed=v["sam_params"], micro_batches=v["accumulate_batches"]))


def _number(text: str) -> float:
  """float(text), NaN where it is not a number (`checks.schedule_problems` says so in one line)."""
  try:
    return float(text)
  except ValueError:
    return math.nan


def method_title(v: Values, the_method: Method) -> str:
  """The method in a few words for figure titles, e.g. "SAM ρ=0.1, η=0.01",
  "momentum β=0.9 + unnormalized SAM ρ=0.05, η=0.1" or "SAM ρ=0.05, η=0.1, clip 5": then the
  regime if linearized and the SAM paper's training knobs that are set (", wd=0.001 in the
  loss, no decay on norms/biases, clip 5, EMA 0.999")."""
  words = [f"{the_method.title() or 'GD'}", f"η={v['step_size']:g}"]
  if v["regime"] == "linearized":
    words.append("linearized")
  if v["weight_decay_in_loss"]:
    words.append(f"wd={v['weight_decay']:g} in the loss")
  if v["no_weight_decay_on_norm"]:
    words.append("no decay on norms/biases")
  if v["clip_grad_norm"] is not None:
    words.append(f"clip {v['clip_grad_norm']:g}")
  if v["ema_decay"]:
    words.append(f"EMA {v['ema_decay']:g}")
  return ", ".join(words)


def run_settings(task: Task, v: Values, problem: Any) -> RunSettings:
  """The run's settings of the values (the method built once, shared by the measurements).
  With --accumulate_batches=k, measurements take the training step's interleaved micro-batches
  of B/k examples; --hessian_check_gap is in hours of training time (0 or None: off), and
  --measure_every_steps replaces it."""
  the_method = method(v)
  micro = v["batch_size"] // v["accumulate_batches"] if v["accumulate_batches"] > 1 else None
  gap_hours = v["hessian_check_gap"] or None
  every = v["measure_every_steps"]
  minutes = v["checkpoint_every_minutes"] or cli_flags.DEFAULT_CHECKPOINT_MINUTES
  outputs = tuple((o.name, v[o.name]) for o in cli_flags.output_options() if v[o.name])
  return RunSettings(
      batch_size=v["batch_size"], seed=v["seed"], method=the_method,
      measure=MeasureSettings(    # the top eigenvalues and the requested curvature kinds
          method=the_method, batch_size=v["batch_size"],
          num_eigenvalues=v["num_principal_components"], eigensolver=v["eigensolver"],
          hvp=v["hvp"], max_steps=v["lanczos_max_steps"], tol=v["lanczos_tol"],
          min_steps=min(3, v["lanczos_max_steps"]), curvature=registry.requested(v),
          chunk=v["measure_chunk"] or micro, interleave=micro is not None,
          track_hvps=v["track_hvps"] if v["track_every_step"] else 0),
      loop=LoopSettings(          # when to measure, evaluate, checkpoint and stop
          time_limit_s=v["time_limit_in_hours"] * 3600.0, measure_every_steps=every,
          measure_gap_s=None if every else (gap_hours * 3600.0 if gap_hours else None),
          max_steps=v["max_steps"], eval_every_steps=v["eval_every_steps"],
          checkpoint_every_s=60.0 * minutes if v["checkpoint_dir"] else None),
      outputs=outputs, title=f"{task.title(problem)}, {method_title(v, the_method)}",
      checkpoint_dir=v["checkpoint_dir"], resume=v["resume"], tensorboard_dir=v["tensorboard_dir"],
      num_devices=v["num_devices"], measure_examples=v["measure_examples"], task=task.prog,
      init_params=v["init_params"], ema_decay=v["ema_decay"] or None,
      monitor=MonitorSettings(        # what the evaluations drive
          plateau=((v["plateau_factor"], v["plateau_patience"]) if v["lr_schedule"] == "plateau"
                   else None),
          early_stopping_patience=v["early_stopping_patience"], restore_best=v["restore_best"]))


def completed(defaults: Values, saved: Values) -> dict:
  """The values `saved` by a run (a pickle's, a checkpoint's, a params file's config) over the
  flags' `defaults`, where ADDED_FLAGS holds the old value of a flag the file predates."""
  return {**defaults, **{k: v for k, v in ADDED_FLAGS.items() if k in defaults}, **saved}


def full_values(task: Task, saved: Values, *, replace: Optional[Values] = None) -> dict:
  """`completed` with the entry point's defaults, then `replace` over it (e.g. another
  --manual_dir)."""
  fv = task_flags(task)
  return {**completed({name: fv[name].default for name in fv}, saved), **(replace or {})}


def of_values(task: Task, saved: Values) -> RunConfig:
  """The run config of a run's saved values (`full_values`)."""
  return _of(task, full_values(task, saved))


def of_flags(task: Task, fv: Any) -> RunConfig:
  """The run config of the parsed, checked flags `fv` of the entry point `task`."""
  return _of(task, flag_values(fv))


def _of(task: Task, values: dict) -> RunConfig:
  problem = task.config(values)
  return RunConfig(task.prog, values, problem, run_settings(task, values, problem))
