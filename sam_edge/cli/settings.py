"""Parsed flags -> the static settings of a run (`run.settings.RunSettings`) and its config.

Called once the flags are checked (`cli.checks`); every value here is valid.
"""

from typing import Any, Optional

from absl import flags

from sam_edge.cli import flags as cli_flags
from sam_edge.curvature import registry
from sam_edge.curvature.measure import MeasureSettings
from sam_edge.optim import optimizers, sam
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings
from sam_edge.run.loop import LoopSettings
from sam_edge.run.monitor import MonitorSettings
from sam_edge.run.settings import RunSettings


def optimizer_settings(f: Any) -> OptimizerSettings:
  """The base optimizer with its own options, L2 weight decay and the step-size schedule."""
  entry = optimizers.OPTIMIZERS[f.optimizer]
  return OptimizerSettings(
      name=f.optimizer, step_size=f.step_size,
      hyper={o.name: f[o.name].value for o in entry.options}, weight_decay=f.weight_decay,
      schedule=f.lr_schedule, warmup_steps=f.warmup_steps, total_steps=f.max_steps,
      boundaries=tuple(float(b) for b in f.lr_step_boundaries), factor=f.lr_step_factor,
      decay_in_loss=f.weight_decay_in_loss, exempt_norm=f.no_weight_decay_on_norm,
      clip=f.clip_grad_norm)


def sam_settings(f: Any) -> SamSettings:
  """The SAM variant with its own options, ρ, the m-sharpness group size, the perturbed
  parameters, the micro-batches and the step-size schedule a ρ may follow."""
  variant = sam.SAM_VARIANTS[f.sam]
  return SamSettings(rho=f.rho, kind=f.sam, group_size=f.sam_group_size,
                     hyper={o.name: f[o.name].value for o in variant.options},
                     perturbed=f.sam_params, micro_batches=f.accumulate_batches,
                     schedule=optimizer_settings(f))


def measure_settings(f: Any) -> MeasureSettings:
  """How measurements are taken (the top eigenvalues and the requested curvature kinds): with
  --accumulate_batches=k in the training step's interleaved micro-batches of B/k examples."""
  micro = f.batch_size // f.accumulate_batches if f.accumulate_batches > 1 else None
  return MeasureSettings(
      optimizer=optimizer_settings(f), sam=sam_settings(f), batch_size=f.batch_size,
      num_eigenvalues=f.num_principal_components, eigensolver=f.eigensolver, hvp=f.hvp,
      max_steps=f.lanczos_max_steps, tol=f.lanczos_tol, min_steps=min(3, f.lanczos_max_steps),
      curvature=registry.requested(f), chunk=f.measure_chunk or micro,
      interleave=micro is not None, track_hvps=f.track_hvps if f.track_every_step else 0)


def loop_settings(f: Any) -> LoopSettings:
  """When to measure, evaluate, checkpoint and stop: --hessian_check_gap is in hours of training
  time (0 or None: off), --measure_every_steps replaces it."""
  gap_hours = f.hessian_check_gap or None
  return LoopSettings(
      time_limit_s=f.time_limit_in_hours * 3600.0, measure_every_steps=f.measure_every_steps,
      measure_gap_s=None if f.measure_every_steps else (gap_hours * 3600.0 if gap_hours else None),
      max_steps=f.max_steps,
      checkpoint_every_s=60.0 * (f.checkpoint_every_minutes
                                 or cli_flags.DEFAULT_CHECKPOINT_MINUTES)
      if f.checkpoint_dir else None, eval_every_steps=f.eval_every_steps)


def ema_decay(f: Any) -> Optional[float]:
  """d of --ema_decay, or None when it is off (unset or 0)."""
  return f.ema_decay or None


def knobs_title(f: Any) -> str:
  """The SAM paper's training knobs that are set, e.g. ", wd=0.001 in the loss, no decay on
  norms/biases, clip 5, EMA 0.999" ("" when none is)."""
  words = []
  if f.weight_decay_in_loss:
    words.append(f"wd={f.weight_decay:g} in the loss")
  if f.no_weight_decay_on_norm:
    words.append("no decay on norms/biases")
  if f.clip_grad_norm is not None:
    words.append(f"clip {f.clip_grad_norm:g}")
  if ema_decay(f) is not None:
    words.append(f"EMA {f.ema_decay:g}")
  return "".join(f", {w}" for w in words)


def method_title(f: Any) -> str:
  """The method in a few words for figure titles, e.g. "SAM ρ=0.1, η=0.01",
  "momentum β=0.9 + unnormalized SAM ρ=0.05, η=0.1" or "SAM ρ=0.05, η=0.1, clip 5"."""
  words = " + ".join(w for w in (optimizer_settings(f).title(), sam_settings(f).title()) if w)
  extra = ", linearized" if f.regime == "linearized" else ""
  return f"{words or 'GD'}, η={f.step_size:g}{extra}{knobs_title(f)}"


def run_settings(f: Any, *, title: str, task: str = "") -> RunSettings:
  """The validated shared flags as settings."""
  outputs = tuple((o.name, f[o.name].value) for o in cli_flags.output_options()
                  if f[o.name].value)
  return RunSettings(batch_size=f.batch_size, seed=f.seed, optimizer=optimizer_settings(f),
                     sam=sam_settings(f), measure=measure_settings(f), loop=loop_settings(f),
                     outputs=outputs, title=title, checkpoint_dir=f.checkpoint_dir,
                     resume=f.resume, tensorboard_dir=f.tensorboard_dir,
                     num_devices=f.num_devices, measure_examples=f.measure_examples,
                     task=task, init_params=f.init_params, ema_decay=ema_decay(f),
                     monitor=monitor_settings(f))


def monitor_settings(f: Any) -> MonitorSettings:
  """What the evaluations drive: the plateau schedule, early stopping, --restore_best."""
  return MonitorSettings(
      plateau=(f.plateau_factor, f.plateau_patience) if f.lr_schedule == "plateau" else None,
      early_stopping_patience=f.early_stopping_patience, restore_best=f.restore_best)


def flag_values(fv: flags.FlagValues) -> dict:
  """{flag: value} of every flag (the run's config, for the pickle)."""
  return {name: fv[name].value for name in sorted(fv)}
