"""The flags both entry points share, defined on an entry point's own `flags.FlagValues`.

Flag names, meanings and defaults follow the reference (see README); each entry point passes its
task's defaults. The tables add their own: every optimizer's and SAM variant's options
(`optim.optimizers`, `optim.sam`), every curvature kind's (`curvature.registry`) and every figure's
output flag (`plots.run.figure_outputs`). Defining them imports neither jax nor matplotlib.
"""

from absl import flags

from sam_edge import options, records
from sam_edge.cli import compilation_cache
from sam_edge.curvature import registry
from sam_edge.data import order
from sam_edge.optim import optimizers, sam, sam_options, training_options
from sam_edge.plots import run as run_figures
from sam_edge.tasks.task import Defaults, Task

DEFAULT_CHECKPOINT_MINUTES = 10.0


def method_options() -> list[options.Option]:
  """The options the optimizer and SAM-variant tables declare, weight decay and the SAM paper's
  training knobs (`optim.training_options`)."""
  return options.unique(optimizers.all_options() + [optimizers.WEIGHT_DECAY]
                        + list(training_options.OPTIONS) + sam.all_options())


def table_options() -> list[options.Option]:
  """The options the tables declare: optimizers, SAM variants, curvature kinds."""
  return options.unique(method_options() + registry.all_options())


def output_options() -> list[options.Option]:
  """Every output flag: the raw pickle, the final parameters and each figure (`''` skips it)."""
  return [records.RAW_DATA, records.PARAMS] + [options.Option(f.flag, f.default, f.help)
                               for f in run_figures.figure_outputs(registry.KINDS)]


def define_common_flags(fv: flags.FlagValues, defaults: Defaults) -> None:
  """Defines the shared flags on `fv` with this task's defaults, each under its --help topic."""
  with options.topic(fv, "data"):
    _define_batch_flags(fv, defaults)
  with options.topic(fv, "model"):
    flags.DEFINE_enum("regime", "network", ["network", "linearized"],
                      "Train the network, or its linearization at the initial parameters w0: "
                      "f_lin(w) = f(w0) + J(w0)(w − w0).", flag_values=fv)
    flags.DEFINE_string("init_params", None,
                        "Start from a --params_output file, or the run folder holding one "
                        "(finetuning): each parameter array (and BatchNorm statistic) whose path "
                        "and shape match this network's is loaded, the others (e.g. a new head "
                        "for another number of classes) keep their fresh initialisation; one line "
                        "lists them. The loaded parameters are w0 (--regime=linearized expands "
                        "around them); the optimizer state starts fresh and the step count at 0. "
                        "A file of another task or architecture is refused. With --resume, an "
                        "existing checkpoint wins: the run continues from it.", flag_values=fv)
  with options.topic(fv, "method"):
    _define_method_flags(fv, defaults)
    _define_schedule_flags(fv)
  with options.topic(fv, "measurement"):
    _define_measurement_flags(fv, defaults)
    for option in registry.all_options():
      options.define(fv, option)
  with options.topic(fv, "loop"):
    _define_loop_flags(fv, defaults)
  with options.topic(fv, "outputs"):
    for option in output_options():
      options.define(fv, options.Option(option.name, option.default,
                                       option.help + " ('' to skip)."))
    flags.DEFINE_string("tensorboard_dir", None, "Write the training loss, every measurement "
                        "and every evaluation as TensorBoard scalars into this folder as they "
                        "happen (`tensorboard --logdir` follows the run live); none if unset.",
                        flag_values=fv)
  with options.topic(fv, "devices"):
    _define_device_flags(fv)


def _define_method_flags(fv: flags.FlagValues, defaults: Defaults) -> None:
  on = {"flag_values": fv}
  flags.DEFINE_float("rho", 0.0, "SAM radius ρ; 0 is the base optimizer alone.", **on)
  flags.DEFINE_float("step_size", defaults.step_size, "Step size η.", **on)
  flags.DEFINE_enum("optimizer", "sgd", list(optimizers.OPTIMIZERS), optimizers.help_text(), **on)
  flags.DEFINE_enum("sam", "normalized", list(sam.SAM_VARIANTS), sam.help_text(), **on)
  flags.DEFINE_integer("sam_group_size", None,
                       "m-sharpness: each group of m examples of a batch takes its gradient at "
                       "its own perturbation, and the groups are averaged (default: the whole "
                       "batch is one group).", **on)
  flags.DEFINE_enum("sam_params", "all", list(sam_options.PERTURBED),
                    "Which parameters SAM perturbs: all, or only the normalisation layers' scales "
                    "and offsets (SAM-ON, Mueller et al.: ε_i = 0 outside LayerNorm/BatchNorm); "
                    "composes with every --sam.", **on)
  flags.DEFINE_integer("accumulate_batches", 1,
                       "k: split every batch into k interleaved micro-batches; each of SAM's "
                       "gradients (and a measurement's) is the mean over them, taken one at a "
                       "time (memory of one micro-batch). With BatchNorm each micro-batch "
                       "normalises with its own statistics.", **on)
  for option in method_options():
    options.define(fv, option)


def _define_batch_flags(fv: flags.FlagValues, defaults: Defaults) -> None:
  on = {"flag_values": fv}
  flags.DEFINE_integer("batch_size", defaults.batch_size,
                       "Examples per step (the whole training set: full batch).", **on)
  flags.DEFINE_float("validation_fraction", 0.0, "Hold out this fraction p of the training set "
                     "as a validation split, never trained on nor measured: images stratified by "
                     "class and drawn from --seed (before --label_noise: clean labels), text the "
                     "last p of the training text. Evaluations then record validation_loss and "
                     "validation_error too.", **on)
  flags.DEFINE_enum("batch_order", defaults.batch_order, list(order.ORDERS),
                    "Which examples each step takes, a pure function of (seed, step): reference "
                    "(the reference's order: images in stored order, unshuffled, repeated; text "
                    "windows in corpus order through a shuffle buffer of 10 batches) or shuffled "
                    "(a fresh permutation every epoch).", **on)


def _define_loop_flags(fv: flags.FlagValues, defaults: Defaults) -> None:
  on = {"flag_values": fv}
  flags.DEFINE_float("time_limit_in_hours", defaults.time_limit_in_hours,
                     "Wall-clock limit of the training loop, measurements included, in hours.",
                     **on)
  flags.DEFINE_integer("max_steps", None, "Stop after this many steps (default: time limit only).",
                       **on)
  flags.DEFINE_integer("early_stopping_patience", None, "Stop after this many evaluations "
                       "without a better validation loss (the test loss without "
                       "--validation_fraction) than the best one (Keras's EarlyStopping; SAM-TF "
                       "uses 10); needs evaluations.", **on)
  flags.DEFINE_bool("restore_best", False, "End with the parameters of the best evaluation (the "
                    "least validation loss, else test loss): the final metrics and "
                    "--params_output are theirs, whether or not the run stopped early; needs "
                    "evaluations.", **on)
  flags.DEFINE_integer("num_epochs", None, "Stop after this many epochs: --max_steps = N · "
                       "⌊training examples / --batch_size⌋ (the time limit still applies).", **on)
  flags.DEFINE_integer("seed", 0, "Seed of everything random: initialisation, batches, solver.",
                       **on)
  _define_checkpoint_flags(fv)


def _define_schedule_flags(fv: flags.FlagValues) -> None:
  on = {"flag_values": fv}
  flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine", "step", "plateau"],
                    "Step-size schedule: constant (the reference), cosine (to 0 at --max_steps), "
                    "step (× --lr_step_factor at each fraction --lr_step_boundaries of "
                    "--max_steps) or plateau (× --plateau_factor after --plateau_patience "
                    "evaluations without a better validation loss, Keras's ReduceLROnPlateau; "
                    "needs evaluations); edges use the step size of the current step.", **on)
  flags.DEFINE_float("plateau_factor", 0.5, "The multiplier of --lr_schedule=plateau (SAM-TF's "
                     "0.5).", **on)
  flags.DEFINE_integer("plateau_patience", 3, "Evaluations without improvement (by more than "
                       "1e-4) of the validation loss (the test loss without "
                       "--validation_fraction) before --lr_schedule=plateau reduces the step "
                       "size (SAM-TF's 3).", **on)
  flags.DEFINE_integer("warmup_steps", 0, "Linear warm-up: η(s) = η (s + 1)/W for s < W.", **on)
  flags.DEFINE_float("warmup_epochs", None, "--warmup_steps in epochs (rounded to whole steps).",
                     **on)
  flags.DEFINE_list("lr_step_boundaries", ["0.5", "0.75"], "Fractions of --max_steps where "
                    "--lr_schedule=step multiplies the step size by --lr_step_factor.", **on)
  flags.DEFINE_float("lr_step_factor", 0.1, "The multiplier of --lr_schedule=step.", **on)
  flags.DEFINE_list("lr_step_epochs", [], "--lr_step_boundaries in epochs (with --num_epochs), "
                    "e.g. 60,120,160.", **on)


def _define_device_flags(fv: flags.FlagValues) -> None:
  on = {"flag_values": fv}
  flags.DEFINE_integer("num_devices", None, "Use the first N devices (default: all local and "
                       "remote devices); the batch is sharded along them.", **on)
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0, to run on several "
                      "hosts with jax.distributed (with --num_processes and --process_id).", **on)
  flags.DEFINE_integer("num_processes", None, "Processes (hosts) of a multi-host run.", **on)
  flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run (0 writes "
                       "the PDFs and the pickle).", **on)
  flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"],
                    "Training forward and backward passes in this dtype, parameters in float32; "
                    "measurements are always float32 at precision 'highest'.", **on)


def _define_measurement_flags(fv: flags.FlagValues, defaults: Defaults) -> None:
  on = {"flag_values": fv}
  flags.DEFINE_float("hessian_check_gap", defaults.hessian_check_gap,
                     "HOURS of training time between Hessian measurements (the first is at step "
                     "0); 0 turns the time-based schedule off.", **on)
  flags.DEFINE_integer("measure_every_steps", None,
                       "Measure every N steps (first at step 0) instead of --hessian_check_gap.",
                       **on)
  flags.DEFINE_integer("eval_every_steps", None, "Held-out metrics (validation when "
                       "--validation_fraction > 0, and test: error, loss, top-5 error with 10 "
                       "classes or more) and the mean training loss of the steps since the last "
                       "evaluation, every N steps, first at step 0; recorded under `evaluations` "
                       "and drawn in --eval_curve_output.", **on)
  flags.DEFINE_float("eval_every_epochs", None, "--eval_every_steps in epochs (rounded to whole "
                     "steps).", **on)
  flags.DEFINE_integer("measure_examples", None, "Measure on the first N training examples "
                       "(windows for the transformer) instead of the current batch.", **on)
  flags.DEFINE_integer("measure_chunk", None, "Take measurements C examples at a time, summing "
                       "gradients and HVPs over chunks on device: memory of C examples.", **on)
  flags.DEFINE_integer("num_principal_components", 1, "k: how many top eigenvalues to measure.",
                       **on)
  flags.DEFINE_enum("eigensolver", "lanczos", ["lanczos", "power"],
                    "lanczos (signed top-k, residuals) or the reference's power/subspace "
                    "iteration.", **on)
  flags.DEFINE_enum("hvp", "exact", ["exact", "finite_difference"],
                    "Hessian-vector products: exact (forward-over-reverse) or the reference's "
                    "central finite difference with step 1e-3.", **on)
  flags.DEFINE_integer("lanczos_max_steps", 30, "Cap on Lanczos steps (= HVPs) per measurement.",
                       **on)
  flags.DEFINE_float("lanczos_tol", 1e-4,
                     "Lanczos stops once every residual ||Hv - λv|| <= tol * |λ1|.", **on)
  flags.DEFINE_bool("track_every_step", False, "λ1 of every step's Hessian, on the step's own "
                    "batch: a Lanczos of --track_hvps HVPs warm-started from a power step on "
                    "the previous step's Ritz vector (free), refreshed by each scheduled "
                    "measurement; the step's gradient is the HVPs' linearization, computed "
                    "once; recorded as "
                    "`lambda1_per_step` (with `lambda1_per_step_residual`, and with ρ > 0 "
                    "`gradient_curvature`, the curvature along SAM's ascent step) in `losses` "
                    "and drawn in --tracking_curve_output.", **on)
  flags.DEFINE_integer("track_hvps", 1, "HVPs per step of --track_every_step (1: the power "
                       "method across steps; more where the top eigenvalues are close).", **on)


def _define_checkpoint_flags(fv: flags.FlagValues) -> None:
  on = {"flag_values": fv}
  flags.DEFINE_string("checkpoint_dir", None, "Folder for resumable checkpoints (orbax); none if "
                      "unset.", **on)
  flags.DEFINE_float("checkpoint_every_minutes", None,
                     f"Minutes between checkpoints (default {DEFAULT_CHECKPOINT_MINUTES:g} when "
                     "--checkpoint_dir is set); one is also written when the run stops.", **on)
  flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --checkpoint_dir "
                    "(start afresh if it holds none); refused if the flags differ.", **on)


def task_flags(task: Task) -> flags.FlagValues:
  """A FlagValues of its own holding the shared flags with the task's defaults and the task's
  own flags (so that both entry points can live in one process, e.g. in tests)."""
  fv = flags.FlagValues()
  define_common_flags(fv, task.defaults)
  for topic, option in task.options:
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
