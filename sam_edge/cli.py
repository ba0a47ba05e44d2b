"""The flags both entry points share, their validation, and what they become.

Flag names, meanings and defaults follow the reference (see README). Each entry point keeps its
flags in its own `flags.FlagValues` (so both can live in one process, e.g. in tests), calls
`define_common_flags` with its own defaults, and uses `parse_flags` as absl's flags parser: a
malformed flag is one error line and exit code 2, like every other bad input.
"""

import math
import os
import sys
from typing import Any, Optional

from absl import flags, logging

from sam_edge import errors, optimizers, records, steps
from sam_edge.experiment import Outputs, RunSettings
from sam_edge.loop import LoopSettings
from sam_edge.measure import MeasureSettings

DEFAULT_CHECKPOINT_MINUTES = 10.0
MAX_LANCZOS_STEPS = 500
# Flags that may change between a checkpointed run and its resumption.
RESUMABLE_CHANGES = ("time_limit_in_hours", "max_steps", "resume", "checkpoint_dir",
                     "checkpoint_every_minutes", "tfds_data_dir", "manual_dir", "tensorboard_dir",
                     "coordinator_address", "process_id")

OUTPUT_FLAGS = {  # flag: (reference default, what it holds)
    "eigs_curve_output": ("/tmp/eigs.pdf", "PDF: top Hessian eigenvalue(s), SAM-edge and 2/η"),
    "eigs_se_only_output": ("/tmp/eigs_se_only.pdf", "PDF: the same without 2/η"),
    "alignment_curve_output": ("/tmp/a.pdf", "PDF: |cos| of gradient and SAM gradient with v1"),
    "loss_curve_output": ("/tmp/ell.pdf", "PDF: training loss"),
    "raw_data_output": ("/tmp/raw.pkl", "pickle of a plain dict: config, records, losses, final"),
    "density_output": ("/tmp/density.pdf", "PDF: the Hessian's spectral density (SLQ) at a few "
                       "measurements, log scale; written with --measure_density"),
    "eval_curve_output": ("/tmp/eval.pdf", "PDF: the training loss beside the test loss and "
                          "test error of every evaluation; written with --eval_every_steps"),
    "curvature_output": ("/tmp/curvature.pdf", "PDF: tr(H) ± its standard error, λ_min and the "
                         "per-layer top eigenvalues; written when one of them is measured"),
}


def define_common_flags(fv: flags.FlagValues, *, step_size: float, batch_size: int,
                        time_limit_in_hours: float, hessian_check_gap: Optional[float]) -> None:
  """Defines the shared flags on `fv` with this entry point's defaults."""
  on = {"flag_values": fv}
  flags.DEFINE_float("rho", 0.0, "SAM radius ρ; 0 is the base optimizer alone.", **on)
  flags.DEFINE_float("step_size", step_size, "Step size η.", **on)
  flags.DEFINE_enum("optimizer", "sgd", list(optimizers.OPTIMIZERS),
                    "Base optimizer (optax), fed the SAM gradient: sgd (the reference: w ← w − ηd), "
                    "momentum (heavy ball: m ← d + βm, w ← w − ηm), nesterov (w ← w − η(d + βm)) "
                    "or adam.", **on)
  flags.DEFINE_float("momentum", 0.9, "β of --optimizer=momentum|nesterov, any value in (-1, 1).",
                     **on)
  flags.DEFINE_float("adam_b1", 0.9, "Adam's β1 (optax's default).", **on)
  flags.DEFINE_float("adam_b2", 0.999, "Adam's β2 (optax's default).", **on)
  flags.DEFINE_float("adam_eps", 1e-8, "Adam's ε (optax's default).", **on)
  flags.DEFINE_float("weight_decay", 0.0,
                     "L2 weight decay wd: wd·w is added to the gradient the base optimizer sees "
                     "(coupled L2, not decoupled AdamW-style decay); SAM's perturbation uses the "
                     "loss gradient alone.", **on)
  flags.DEFINE_enum("sam", "normalized", list(steps.SAM_KINDS),
                    "SAM perturbation ε: normalized (the reference: ρg/(‖g‖+1e-5)), "
                    "unnormalized (ρg) or adaptive (ASAM: ρT²g/‖Tg‖, T = |w| + --asam_xi).",
                    **on)
  flags.DEFINE_float("asam_xi", steps.ASAM_XI, "ξ of ASAM's T = |w| + ξ (Kwon et al.: 0.01).",
                     **on)
  flags.DEFINE_integer("sam_group_size", None,
                       "m-sharpness: each group of m examples of a batch takes its gradient at "
                       "its own perturbation, and the groups are averaged (default: the whole "
                       "batch is one group).", **on)
  flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine", "step"],
                    "Step-size schedule: constant (the reference), cosine (to 0 at --max_steps) or "
                    "step (× --lr_step_factor at each fraction --lr_step_boundaries of "
                    "--max_steps); edges use the step size of the current step.", **on)
  flags.DEFINE_integer("warmup_steps", 0, "Linear warm-up: η(s) = η (s + 1)/W for s < W.", **on)
  flags.DEFINE_list("lr_step_boundaries", ["0.5", "0.75"], "Fractions of --max_steps where "
                    "--lr_schedule=step multiplies the step size by --lr_step_factor.", **on)
  flags.DEFINE_float("lr_step_factor", 0.1, "The multiplier of --lr_schedule=step.", **on)
  flags.DEFINE_integer("eval_every_steps", None, "Test metrics (test error and test loss) every "
                       "N steps, first at step 0; recorded under `evaluations` and drawn in "
                       "--eval_curve_output.", **on)
  flags.DEFINE_integer("num_devices", None, "Use the first N devices (default: all local and "
                       "remote devices); the batch is sharded along them.", **on)
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0, to run on several "
                      "hosts with jax.distributed (with --num_processes and --process_id).", **on)
  flags.DEFINE_integer("num_processes", None, "Processes (hosts) of a multi-host run.", **on)
  flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run (0 writes "
                       "the PDFs and the pickle).", **on)
  flags.DEFINE_integer("measure_examples", None, "Measure on the first N training examples "
                       "(windows for the transformer) instead of the current batch.", **on)
  flags.DEFINE_integer("measure_chunk", None, "Take measurements C examples at a time, summing "
                       "gradients and HVPs over chunks on device: memory of C examples.", **on)
  flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"],
                    "Training forward and backward passes in this dtype, parameters in float32; "
                    "measurements are always float32 at precision 'highest'.", **on)
  flags.DEFINE_enum("regime", "network", ["network", "linearized"],
                    "Train the network, or its linearisation at the initial parameters w0: "
                    "f_lin(w) = f(w0) + J(w0)(w − w0).", **on)
  flags.DEFINE_integer("batch_size", batch_size,
                       "Examples per step (the whole training set: full batch).", **on)
  flags.DEFINE_float("time_limit_in_hours", time_limit_in_hours,
                     "Wall-clock limit of the training loop, measurements included, in hours.", **on)
  flags.DEFINE_float("hessian_check_gap", hessian_check_gap,
                     "HOURS of training time between Hessian measurements (the first is at step "
                     "0); 0 turns the time-based schedule off.", **on)
  flags.DEFINE_integer("measure_every_steps", None,
                       "Measure every N steps (first at step 0) instead of --hessian_check_gap.",
                       **on)
  flags.DEFINE_integer("max_steps", None, "Stop after this many steps (default: time limit only).",
                       **on)
  flags.DEFINE_integer("seed", 0, "Seed of everything random: initialisation, batches, solver.",
                       **on)
  flags.DEFINE_integer("num_principal_components", 1, "k: how many top eigenvalues to measure.",
                       **on)
  flags.DEFINE_enum("eigensolver", "lanczos", ["lanczos", "power"],
                    "lanczos (signed top-k, residuals) or the reference's power/subspace iteration.",
                    **on)
  flags.DEFINE_enum("hvp", "exact", ["exact", "finite_difference"],
                    "Hessian-vector products: exact (forward-over-reverse) or the reference's "
                    "central finite difference with step 1e-3.", **on)
  flags.DEFINE_integer("lanczos_max_steps", 30, "Cap on Lanczos steps (= HVPs) per measurement.",
                       **on)
  flags.DEFINE_float("lanczos_tol", 1e-4,
                     "Lanczos stops once every residual ||Hv - λv|| <= tol * |λ1|.", **on)
  define_curvature_flags(fv)
  for name, (default, help_text) in OUTPUT_FLAGS.items():
    flags.DEFINE_string(name, default, help_text + " ('' to skip).", **on)
  flags.DEFINE_string("checkpoint_dir", None, "Folder for resumable checkpoints (orbax); none if "
                      "unset.", **on)
  flags.DEFINE_float("checkpoint_every_minutes", None,
                     f"Minutes between checkpoints (default {DEFAULT_CHECKPOINT_MINUTES:g} when "
                     "--checkpoint_dir is set); one is also written when the run stops.", **on)
  flags.DEFINE_string("tensorboard_dir", None, "Write the training loss, every measurement and "
                      "every evaluation as TensorBoard scalars into this folder as they happen "
                      "(`tensorboard --logdir` follows the run live); none if unset.", **on)
  flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --checkpoint_dir "
                    "(start afresh if it holds none); refused if the flags differ.", **on)


def define_curvature_flags(fv: flags.FlagValues) -> None:
  """Curvature beyond λ1 (`curvature.registry`); all off by default (no cost unless asked)."""
  on = {"flag_values": fv}
  flags.DEFINE_bool("measure_trace", False, "Measure tr(H) with its standard error (Hutch++ by "
                    "default) at every measurement.", **on)
  flags.DEFINE_integer("trace_probes", 60, "HVPs per trace estimate (Hutch++ spends a third on "
                       "its sketch).", **on)
  flags.DEFINE_enum("trace_method", "hutch++", ["hutch++", "hutchinson"],
                    "Trace estimator: Hutch++ (Meyer et al.) or Hutchinson with Rademacher probes.",
                    **on)
  flags.DEFINE_bool("measure_density", False, "Measure the Hessian's spectral density by "
                    "stochastic Lanczos quadrature; nodes and weights are pickled and drawn in "
                    "--density_output.", **on)
  flags.DEFINE_integer("density_probes", 2, "Random probes of the spectral density.", **on)
  flags.DEFINE_integer("density_steps", 90, "Lanczos steps (= HVPs) per density probe.", **on)
  flags.DEFINE_bool("measure_per_layer", False, "Measure the top eigenvalue (and, with "
                    "--measure_trace, the trace) of each module's diagonal Hessian block.", **on)
  flags.DEFINE_bool("measure_min_eigenvalue", False, "Measure λ_min, the smallest (most "
                    "negative) Hessian eigenvalue, with its residual.", **on)
  flags.DEFINE_integer("min_eigenvalue_max_steps", 80, "Cap on Lanczos steps for λ_min (it "
                       "converges more slowly than λ1).", **on)


def curvature_settings(f: Any) -> tuple[tuple[str, Any], ...]:
  """The requested curvature kinds and their settings, in registry order."""
  from sam_edge.curvature import registry
  kinds = []
  if f.measure_trace:
    kinds.append(("trace", registry.TraceSettings(probes=f.trace_probes, method=f.trace_method)))
  if f.measure_density:
    kinds.append(("density", registry.DensitySettings(probes=f.density_probes,
                                                      steps=f.density_steps)))
  if f.measure_per_layer:
    kinds.append(("per_layer", registry.PerLayerSettings(
        max_steps=f.lanczos_max_steps, tol=f.lanczos_tol, min_steps=min(3, f.lanczos_max_steps),
        trace_probes=f.trace_probes if f.measure_trace else 0)))
  if f.measure_min_eigenvalue:
    kinds.append(("min_eigenvalue", registry.MinEigenvalueSettings(
        max_steps=f.min_eigenvalue_max_steps, tol=f.lanczos_tol,
        min_steps=min(3, f.min_eigenvalue_max_steps))))
  return tuple(kinds)


def curvature_problems(f: Any) -> list[str]:
  """One line per curvature setting that cannot run, naming its flag."""
  from sam_edge.curvature import registry
  flag_of = {"trace": "--trace_probes", "density": "--density_probes/--density_steps",
             "per_layer": "--measure_per_layer", "min_eigenvalue": "--min_eigenvalue_max_steps"}
  p = []
  for name, settings in curvature_settings(f):
    reason = registry.settings_error(name, settings)
    if reason:
      p.append(f"{flag_of[name]}: {reason}")
  return p


def parse_flags(fv: flags.FlagValues, argv: list[str]) -> list[str]:
  """Parses `argv` into `fv`: --help prints the flags; a malformed or unknown flag is one line on
  stderr and exit code 2. absl's own flags keep their defaults."""
  prog = os.path.basename(argv[0]).removesuffix(".py")
  if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv[1:]):
    print(f"usage: python -m {prog} [--flag=value ...]\n")
    print(fv.get_help())
    sys.exit(0)
  try:
    fv.unparse_flags()
    rest = fv(argv)
  except flags.Error as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    sys.exit(2)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.WARNING)      # absl's app.run would log INFO from jax and TFDS
  if len(rest) > 1:
    print(f"{prog}: error: unexpected arguments {rest[1:]}", file=sys.stderr)
    sys.exit(2)
  return rest


def _check(problems: list[str], ok: bool, message: str) -> None:
  if not ok:
    problems.append(message)


def _finite(x: float) -> bool:
  return x is not None and math.isfinite(x)


def common_problems(f: Any) -> list[str]:
  """Every problem with the shared flags, each one line naming its flag (empty if none)."""
  p: list[str] = []
  _check(p, _finite(f.rho) and f.rho >= 0, f"--rho must be a finite number >= 0, got {f.rho}")
  _check(p, _finite(f.step_size) and f.step_size > 0,
         f"--step_size must be a finite number > 0, got {f.step_size}")
  _check(p, f.batch_size >= 1, f"--batch_size must be at least 1, got {f.batch_size}")
  _check(p, _finite(f.time_limit_in_hours) and f.time_limit_in_hours > 0,
         f"--time_limit_in_hours must be > 0, got {f.time_limit_in_hours}")
  _check(p, f.hessian_check_gap is None or (_finite(f.hessian_check_gap) and f.hessian_check_gap >= 0),
         f"--hessian_check_gap must be >= 0 hours, got {f.hessian_check_gap}")
  _check(p, f.measure_every_steps is None or f.measure_every_steps >= 1,
         f"--measure_every_steps must be at least 1, got {f.measure_every_steps}")
  _check(p, f.max_steps is None or f.max_steps >= 0, f"--max_steps must be >= 0, got {f.max_steps}")
  _check(p, f.lanczos_max_steps >= 1, f"--lanczos_max_steps must be at least 1, got {f.lanczos_max_steps}")
  _check(p, _finite(f.lanczos_tol) and f.lanczos_tol > 0, f"--lanczos_tol must be > 0, got {f.lanczos_tol}")
  k_cap = f.lanczos_max_steps if f.eigensolver == "lanczos" else math.inf
  _check(p, 1 <= f.num_principal_components <= k_cap,
         f"--num_principal_components must be between 1 and --lanczos_max_steps "
         f"({f.lanczos_max_steps}), got {f.num_principal_components}")
  _check(p, f.lanczos_max_steps <= MAX_LANCZOS_STEPS,
         f"--lanczos_max_steps must be at most {MAX_LANCZOS_STEPS} (the basis is kept whole), "
         f"got {f.lanczos_max_steps}")
  _check(p, 0 <= f.seed < 2**32, f"--seed must be between 0 and 2**32 - 1, got {f.seed}")
  p.extend(method_problems(f))
  p.extend(curvature_problems(f))
  seen: dict[str, str] = {}
  for name in OUTPUT_FLAGS:
    path = getattr(f, name)
    if path:
      reason = records.check_writable(path)
      _check(p, reason is None, f"--{name}={path}: cannot write there: {reason}")
      real = os.path.realpath(path)
      if real in seen:
        p.append(f"--{name} and --{seen[real]} are the same file {path}")
      seen.setdefault(real, name)
      if f.checkpoint_dir and real.startswith(os.path.realpath(f.checkpoint_dir) + os.sep):
        p.append(f"--{name}={path} is inside --checkpoint_dir; keep outputs elsewhere")
  _check(p, f.checkpoint_every_minutes is None or (_finite(f.checkpoint_every_minutes)
                                                    and f.checkpoint_every_minutes > 0),
         f"--checkpoint_every_minutes must be > 0, got {f.checkpoint_every_minutes}")
  if f.tensorboard_dir:
    reason = records.folder_problem(f.tensorboard_dir)
    _check(p, reason is None, f"--tensorboard_dir={f.tensorboard_dir}: {reason}")
  if f.resume and not f.checkpoint_dir:
    p.append("--resume needs --checkpoint_dir")
  if f.checkpoint_dir:
    p.extend(checkpoint_problems(f))
  return p


def method_problems(f: Any) -> list[str]:
  """Problems with the optimizer and SAM flags (one line each)."""
  p: list[str] = []
  _check(p, _finite(f.momentum) and -1 < f.momentum < 1,
         f"--momentum must lie in (-1, 1), got {f.momentum}")
  _check(p, _finite(f.adam_b1) and 0 <= f.adam_b1 < 1,
         f"--adam_b1 must lie in [0, 1), got {f.adam_b1}")
  _check(p, _finite(f.adam_b2) and 0 <= f.adam_b2 < 1,
         f"--adam_b2 must lie in [0, 1), got {f.adam_b2}")
  _check(p, _finite(f.adam_eps) and f.adam_eps > 0, f"--adam_eps must be > 0, got {f.adam_eps}")
  _check(p, _finite(f.weight_decay) and f.weight_decay >= 0,
         f"--weight_decay must be >= 0, got {f.weight_decay}")
  _check(p, _finite(f.asam_xi) and f.asam_xi >= 0, f"--asam_xi must be >= 0, got {f.asam_xi}")
  if f.lr_schedule != "constant" and f.max_steps is None:
    p.append(f"--lr_schedule={f.lr_schedule} needs --max_steps (the schedule's length)")
  _check(p, f.warmup_steps >= 0, f"--warmup_steps must be >= 0, got {f.warmup_steps}")
  try:
    bounds = [float(b) for b in f.lr_step_boundaries]
    _check(p, all(0 <= b <= 1 for b in bounds),
           f"--lr_step_boundaries must be fractions in [0, 1], got {f.lr_step_boundaries}")
  except ValueError:
    p.append(f"--lr_step_boundaries must be numbers, got {f.lr_step_boundaries}")
  _check(p, _finite(f.lr_step_factor) and f.lr_step_factor > 0,
         f"--lr_step_factor must be > 0, got {f.lr_step_factor}")
  _check(p, f.eval_every_steps is None or f.eval_every_steps >= 1,
         f"--eval_every_steps must be at least 1, got {f.eval_every_steps}")
  p.extend(device_problems(f))
  m = f.sam_group_size
  if m is not None:
    if m < 1:
      p.append(f"--sam_group_size must be at least 1, got {m}")
    elif f.batch_size >= 1 and f.batch_size % m:
      p.append(f"--sam_group_size={m} does not divide --batch_size={f.batch_size}")
    else:     # a measurement takes SAM's gradient on its set, or on each chunk of it, in groups
      for name in ("measure_examples", "measure_chunk"):
        if f[name].value is not None and f[name].value >= 1 and f[name].value % m:
          p.append(f"--sam_group_size={m} does not divide --{name}={f[name].value}")
  return p


def method_title(f: Any) -> str:
  """The method in a few words for figure titles, e.g. "SAM ρ=0.1, η=0.01" or
  "momentum β=0.9 + unnormalized SAM ρ=0.05, η=0.1"."""
  base = {"sgd": "", "momentum": f"momentum β={f.momentum:g}",
          "nesterov": f"Nesterov β={f.momentum:g}", "adam": "Adam"}[f.optimizer]
  sam = ""
  if f.rho > 0:
    sam = ("SAM" if f.sam == "normalized" else f"{f.sam} SAM") + f" ρ={f.rho:g}"
    if f.sam_group_size:
      sam += f" m={f.sam_group_size}"
  words = " + ".join(w for w in (base, sam) if w) or "GD"
  extra = ", linearised" if f.regime == "linearized" else ""
  return f"{words}, η={f.step_size:g}{extra}"


def device_problems(f: Any) -> list[str]:
  """The device, host and measured-set flags (one line each); reads the device count."""
  import jax
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


def optimizer_settings(f: Any) -> optimizers.OptimizerSettings:
  return optimizers.OptimizerSettings(
      name=f.optimizer, step_size=f.step_size, momentum=f.momentum, adam_b1=f.adam_b1,
      adam_b2=f.adam_b2, adam_eps=f.adam_eps, weight_decay=f.weight_decay,
      schedule=f.lr_schedule, warmup_steps=f.warmup_steps, total_steps=f.max_steps,
      boundaries=tuple(float(b) for b in f.lr_step_boundaries), factor=f.lr_step_factor)


def sam_settings(f: Any) -> steps.SamSettings:
  return steps.SamSettings(rho=f.rho, kind=f.sam, group_size=f.sam_group_size, xi=f.asam_xi)


def checkpoint_problems(f: Any) -> list[str]:
  """Whether --checkpoint_dir can be used, and --resume with it (one line each)."""
  from sam_edge import checkpoints, locks
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
  if sound.config.get("lr_schedule", "constant") != "constant":
    resumable = tuple(n for n in resumable if n != "max_steps")   # the schedule's length
  differ = checkpoints.config_differences(sound.config, flag_values(f),
                                          ignore=resumable + tuple(OUTPUT_FLAGS))
  if differ:
    return [f"--resume: the checkpoint in {f.checkpoint_dir} was written with different flags: "
            + ", ".join(f"--{name} (was {sound.config.get(name)!r}, now {f[name].value!r})"
                        if name in f else f"--{name}" for name in differ)]
  return []


def run_settings(f: Any, *, title: str) -> RunSettings:
  """The validated shared flags as settings."""
  gap_hours = f.hessian_check_gap or None
  optimizer, sam = optimizer_settings(f), sam_settings(f)
  measure = MeasureSettings(
      optimizer=optimizer, sam=sam, batch_size=f.batch_size,
      num_eigenvalues=f.num_principal_components, eigensolver=f.eigensolver, hvp=f.hvp,
      max_steps=f.lanczos_max_steps, tol=f.lanczos_tol, min_steps=min(3, f.lanczos_max_steps),
      curvature=curvature_settings(f), chunk=f.measure_chunk)
  loop = LoopSettings(
      time_limit_s=f.time_limit_in_hours * 3600.0, measure_every_steps=f.measure_every_steps,
      measure_gap_s=None if f.measure_every_steps else (gap_hours * 3600.0 if gap_hours else None),
      max_steps=f.max_steps,
      checkpoint_every_s=60.0 * (f.checkpoint_every_minutes or DEFAULT_CHECKPOINT_MINUTES)
      if f.checkpoint_dir else None, eval_every_steps=f.eval_every_steps)
  outputs = Outputs(**{name.removesuffix("_output"): getattr(f, name) or None
                       for name in OUTPUT_FLAGS})
  return RunSettings(batch_size=f.batch_size, seed=f.seed, optimizer=optimizer, sam=sam,
                     measure=measure, loop=loop, outputs=outputs, title=title,
                     checkpoint_dir=f.checkpoint_dir, resume=f.resume,
                     tensorboard_dir=f.tensorboard_dir, num_devices=f.num_devices,
                     measure_examples=f.measure_examples)


def flag_values(fv: flags.FlagValues) -> dict:
  """{flag: value} of every flag (the run's config, for the pickle)."""
  return {name: fv[name].value for name in sorted(fv)}


def fail(prog: str, problems: list[str]) -> int:
  """Prints each problem as one line on stderr; returns exit code 2."""
  for problem in problems:
    print(f"{prog}: error: {problem}", file=sys.stderr)
  return 2


def main_guard(prog: str, fn) -> int:
  """Runs `fn()`; an InputError found later (e.g. in a data file) is one line and exit code 2."""
  try:
    return fn()
  except errors.InputError as e:
    return fail(prog, [str(e)])


def start_devices(prog: str, f: Any) -> Optional[int]:
  """Starts jax.distributed when the flags or the environment ask for it (before any other jax
  call); returns exit code 2 (after one line) if that fails, else None."""
  from sam_edge import devices
  multi = (f.coordinator_address, f.num_processes, f.process_id)
  if any(x is not None for x in multi) and not all(x is not None for x in multi):
    return None                         # reported with the other problems
  try:
    line = devices.initialize(f.coordinator_address, f.num_processes, f.process_id)
  except Exception as e:                # jax raises several kinds; one line says which
    return fail(prog, [f"--coordinator_address={f.coordinator_address}: jax.distributed could "
                       f"not start: {type(e).__name__}: {' '.join(str(e).split())[:300]}"])
  if line:
    print(line, flush=True)
  return None
