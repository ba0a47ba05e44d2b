"""The flags both entry points share, defined on an entry point's own `flags.FlagValues`.

Flag names, meanings and defaults follow the reference (see README); each entry point passes its
task's defaults. Each shared flag is an `options.Option` declared under its --help topic, with the
check of its own range (`cli.checks` applies them). The tables add their own: every optimizer's
and SAM variant's options (`optim.optimizers`, `optim.sam`), every curvature kind's
(`curvature.registry`) and every figure's output flag (`plots.run.figure_outputs`). Defining them
imports neither jax nor matplotlib.
"""

import math

from absl import flags

from sam_edge import options, records
from sam_edge.cli import compilation_cache
from sam_edge.curvature import registry
from sam_edge.data import order
from sam_edge.optim import optimizers, sam, sam_options, training_options
from sam_edge.options import Option
from sam_edge.plots import run as run_figures
from sam_edge.tasks.task import Defaults, Task, at_least, check

DEFAULT_CHECKPOINT_MINUTES = 10.0
MAX_LANCZOS_STEPS = 500
AT_LEAST_1 = at_least(1)
ABOVE_0 = check(lambda x: math.isfinite(x) and x > 0, "must be > 0")
NOT_NEGATIVE = check(lambda x: x >= 0, "must be >= 0")


def output_options() -> list[Option]:
  """Every output flag: the raw pickle, the final parameters and each figure (`''` skips it)."""
  return [records.RAW_DATA, records.PARAMS] + [Option(f.flag, f.default, f.help)
                                               for f in run_figures.figure_outputs(registry.KINDS)]


def entry_options(task: Task) -> tuple[tuple[str, Option], ...]:
  """Every flag of the entry point `task` as (--help topic, option), in definition order: the
  shared flags with the task's defaults, then the task's own."""
  d = task.defaults
  return options.topics(
      data=(
          Option("batch_size", d.batch_size,
                 "Examples per step (the whole training set: full batch).", check=AT_LEAST_1),
          Option("validation_fraction", 0.0, "Hold out this fraction p of the training set as a "
                 "validation split, never trained on nor measured: images stratified by class "
                 "and drawn from --seed (before --label_noise: clean labels), text the last p of "
                 "the training text. Evaluations then record validation_loss and "
                 "validation_error too.", check=options.interval(0, 1)),
          Option("batch_order", d.batch_order, "Which examples each step takes, a pure function "
                 "of (seed, step): reference (the reference's order: images in stored order, "
                 "unshuffled, repeated; text windows in corpus order through a shuffle buffer of "
                 "10 batches) or shuffled (a fresh permutation every epoch).",
                 choices=tuple(order.ORDERS))),
      model=(
          Option("regime", "network", "Train the network, or its linearization at the initial "
                 "parameters w0: f_lin(w) = f(w0) + J(w0)(w − w0).",
                 choices=("network", "linearized")),
          Option("init_params", None, "Start from a --params_output file, or the run folder "
                 "holding one (finetuning): each parameter array (and BatchNorm statistic) whose "
                 "path and shape match this network's is loaded, the others (e.g. a new head for "
                 "another number of classes) keep their fresh initialisation; one line lists "
                 "them. The loaded parameters are w0 (--regime=linearized expands around them); "
                 "the optimizer state starts fresh and the step count at 0. A file of another "
                 "task or architecture is refused. With --resume, an existing checkpoint wins: "
                 "the run continues from it.", type=str)),
      method=_method_options(d) + _schedule_options(),
      measurement=_measurement_options(d) + tuple(registry.all_options()),
      loop=_loop_options(d),
      outputs=(*(Option(o.name, o.default, o.help + " ('' to skip).") for o in output_options()),
               Option("tensorboard_dir", None, "Write the training loss, every measurement and "
                      "every evaluation as TensorBoard scalars into this folder as they happen "
                      "(`tensorboard --logdir` follows the run live); none if unset.", type=str)),
      devices=_device_options()) + task.options


def _method_options(d: Defaults) -> tuple[Option, ...]:
  return (
      Option("rho", 0.0, "SAM radius ρ; 0 is the base optimizer alone."),
      Option("step_size", d.step_size, "Step size η.", type=float, check=options.positive),
      Option("optimizer", "sgd", optimizers.help_text(), choices=tuple(optimizers.OPTIMIZERS)),
      Option("sam", "normalized", sam.help_text(), choices=tuple(sam.SAM_VARIANTS)),
      Option("sam_group_size", None, "m-sharpness: each group of m examples of a batch takes its "
             "gradient at its own perturbation, and the groups are averaged (default: the whole "
             "batch is one group).", type=int),
      Option("sam_params", "all", "Which parameters SAM perturbs: all, or only the normalisation "
             "layers' scales and offsets (SAM-ON, Mueller et al.: ε_i = 0 outside "
             "LayerNorm/BatchNorm); composes with every --sam.",
             choices=tuple(sam_options.PERTURBED)),
      Option("accumulate_batches", 1, "k: split every batch into k interleaved micro-batches; "
             "each of SAM's gradients (and a measurement's) is the mean over them, taken one at "
             "a time (memory of one micro-batch). With BatchNorm each micro-batch normalises "
             "with its own statistics."),
      # the optimizer and SAM-variant tables' options, weight decay, the SAM paper's knobs
      *options.unique(optimizers.all_options() + [optimizers.WEIGHT_DECAY]
                      + list(training_options.OPTIONS) + sam.all_options()))


def _schedule_options() -> tuple[Option, ...]:
  return (
      Option("lr_schedule", "constant", "Step-size schedule: constant (the reference), cosine "
             "(to 0 at --max_steps), step (× --lr_step_factor at each fraction "
             "--lr_step_boundaries of --max_steps) or plateau (× --plateau_factor after "
             "--plateau_patience evaluations without a better validation loss, Keras's "
             "ReduceLROnPlateau; needs evaluations); edges use the step size of the current "
             "step.", choices=("constant", "cosine", "step", "plateau")),
      Option("plateau_factor", 0.5, "The multiplier of --lr_schedule=plateau (SAM-TF's 0.5).",
             check=options.interval(0, 1, low_open=True)),
      Option("plateau_patience", 3, "Evaluations without improvement (by more than 1e-4) of the "
             "validation loss (the test loss without --validation_fraction) before "
             "--lr_schedule=plateau reduces the step size (SAM-TF's 3).", check=AT_LEAST_1),
      Option("warmup_steps", 0, "Linear warm-up: η(s) = η (s + 1)/W for s < W.",
             check=NOT_NEGATIVE),
      Option("warmup_epochs", None, "--warmup_steps in epochs (rounded to whole steps).",
             type=float),
      Option("lr_step_boundaries", ["0.5", "0.75"], "Fractions of --max_steps where "
             "--lr_schedule=step multiplies the step size by --lr_step_factor."),
      Option("lr_step_factor", 0.1, "The multiplier of --lr_schedule=step.", check=ABOVE_0),
      Option("lr_step_epochs", [], "--lr_step_boundaries in epochs (with --num_epochs), e.g. "
             "60,120,160."))


def _measurement_options(d: Defaults) -> tuple[Option, ...]:
  return (
      Option("hessian_check_gap", d.hessian_check_gap, "HOURS of training time between Hessian "
             "measurements (the first is at step 0); 0 turns the time-based schedule off.",
             type=float, check=check(lambda x: x is None or (math.isfinite(x) and x >= 0),
                                     "must be >= 0 hours")),
      Option("measure_every_steps", None, "Measure every N steps (first at step 0) instead of "
             "--hessian_check_gap.", type=int, check=AT_LEAST_1),
      Option("eval_every_steps", None, "Held-out metrics (validation when --validation_fraction "
             "> 0, and test: error, loss, top-5 error with 10 classes or more) and the mean "
             "training loss of the steps since the last evaluation, every N steps, first at step "
             "0; recorded under `evaluations` and drawn in --eval_curve_output.", type=int,
             check=AT_LEAST_1),
      Option("eval_every_epochs", None, "--eval_every_steps in epochs (rounded to whole steps).",
             type=float),
      Option("measure_examples", None, "Measure on the first N training examples (windows for "
             "the transformer) instead of the current batch.", type=int, check=AT_LEAST_1),
      Option("measure_chunk", None, "Take measurements C examples at a time, summing gradients "
             "and HVPs over chunks on device: memory of C examples.", type=int,
             check=AT_LEAST_1),
      Option("num_principal_components", 1, "k: how many top eigenvalues to measure."),
      Option("eigensolver", "lanczos", "lanczos (signed top-k, residuals) or the reference's "
             "power/subspace iteration.", choices=("lanczos", "power")),
      Option("hvp", "exact", "Hessian-vector products: exact (forward-over-reverse) or the "
             "reference's central finite difference with step 1e-3.",
             choices=("exact", "finite_difference")),
      Option("lanczos_max_steps", 30, "Cap on Lanczos steps (= HVPs) per measurement.",
             check=lambda x: AT_LEAST_1(x) or (
                 f"must be at most {MAX_LANCZOS_STEPS} (the basis is kept whole)"
                 if x > MAX_LANCZOS_STEPS else None)),
      Option("lanczos_tol", 1e-4, "Lanczos stops once every residual ||Hv - λv|| <= tol * |λ1|.",
             check=ABOVE_0),
      Option("track_every_step", False, "λ1 of every step's Hessian, on the step's own batch: a "
             "Lanczos of --track_hvps HVPs warm-started from a power step on the previous step's "
             "Ritz vector (free), refreshed by each scheduled measurement; the step's gradient is "
             "the HVPs' linearization, computed once; recorded as `lambda1_per_step` (with "
             "`lambda1_per_step_residual`, and with ρ > 0 `gradient_curvature`, the curvature "
             "along SAM's ascent step) in `losses` and drawn in --tracking_curve_output."),
      Option("track_hvps", 1, "HVPs per step of --track_every_step (1: the power method across "
             "steps; more where the top eigenvalues are close)."))


def _loop_options(d: Defaults) -> tuple[Option, ...]:
  return (
      Option("time_limit_in_hours", d.time_limit_in_hours, "Wall-clock limit of the training "
             "loop, measurements included, in hours.", type=float, check=ABOVE_0),
      Option("max_steps", None, "Stop after this many steps (default: time limit only).",
             type=int, check=NOT_NEGATIVE),
      Option("early_stopping_patience", None, "Stop after this many evaluations without a better "
             "validation loss (the test loss without --validation_fraction) than the best one "
             "(Keras's EarlyStopping; SAM-TF uses 10); needs evaluations.", type=int,
             check=AT_LEAST_1),
      Option("restore_best", False, "End with the parameters of the best evaluation (the least "
             "validation loss, else test loss): the final metrics and --params_output are "
             "theirs, whether or not the run stopped early; needs evaluations."),
      Option("num_epochs", None, "Stop after this many epochs: --max_steps = N · ⌊training "
             "examples / --batch_size⌋ (the time limit still applies).", type=int),
      Option("seed", 0, "Seed of everything random: initialisation, batches, solver.",
             check=check(lambda x: 0 <= x < 2**32, "must be between 0 and 2**32 - 1")),
      Option("checkpoint_dir", None, "Folder for resumable checkpoints (orbax); none if unset.",
             type=str),
      Option("checkpoint_every_minutes", None, "Minutes between checkpoints (default "
             f"{DEFAULT_CHECKPOINT_MINUTES:g} when --checkpoint_dir is set); one is also written "
             "when the run stops.", type=float, check=ABOVE_0),
      Option("resume", False, "Continue from the latest checkpoint in --checkpoint_dir (start "
             "afresh if it holds none); refused if the flags differ."))


def _device_options() -> tuple[Option, ...]:
  return (
      Option("num_devices", None, "Use the first N devices (default: all local and remote "
             "devices); the batch is sharded along them.", type=int),
      Option("coordinator_address", None, "host:port of process 0, to run on several hosts with "
             "jax.distributed (with --num_processes and --process_id).", type=str),
      Option("num_processes", None, "Processes (hosts) of a multi-host run.", type=int),
      Option("process_id", None, "This process's index in a multi-host run (0 writes the PDFs "
             "and the pickle).", type=int),
      Option("compute_dtype", "float32", "Training forward and backward passes in this dtype, "
             "parameters in float32; measurements are always float32 at precision 'highest'.",
             choices=("float32", "bfloat16")))


def task_flags(task: Task) -> flags.FlagValues:
  """A FlagValues of its own holding the shared flags with the task's defaults and the task's
  own flags (so that both entry points can live in one process, e.g. in tests)."""
  fv = flags.FlagValues()
  for topic, option in entry_options(task):
    with options.topic(fv, topic):
      options.define(fv, option)
  for name in task.required:
    flags.mark_flag_as_required(name, flag_values=fv)
  with options.topic(fv, "loop"):
    compilation_cache.define_flag(fv)
  return fv


def flag_values(fv: flags.FlagValues) -> dict:
  """{flag: value} of every flag of `fv` (a run's values, `config.of_values`)."""
  return {name: fv[name].value for name in sorted(fv)}
