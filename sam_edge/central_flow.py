"""`python -m sam_edge.central_flow [RUN_FOLDER] [--flag=value ...] --out=DIR`: full-batch GD on
an image task, the central flow (Cohen, Damian et al., ICLR 2025) and gradient flow integrated
from the same initialisation; writes central_flow.pdf and central_flow.pkl into DIR and prints
how closely the flow follows GD. See README, "Central flows", and `sam_edge.flows`.

The problem comes from image_classification's flags (the same model, loss, data and seed give
the same initial parameters), or from RUN_FOLDER: a finished GD run's folder, whose pickle's
config supplies every flag the command line does not give; its initial parameters are rebuilt
from its seed, exactly as the run built them. GD is run again (its λ1 at every step is needed).

Bad input (a missing or unfinished run folder, not a GD run, ρ > 0, not full batch, no
--max_steps, an unwritable --out, non-positive --substeps, ...) is one line and exit code 2
before anything is loaded; neither the import nor --help loads jax.
"""

import os
import sys

from absl import flags

from sam_edge import records
from sam_edge.cli import compilation_cache
from sam_edge.cli import flags as cli_flags
from sam_edge.cli import main as cli
from sam_edge.data import image_specs
from sam_edge.studies import sources
from sam_edge.tasks.image_task import BATCH_NORM, TASK

PROG = "central_flow"
USAGE = ("python -m sam_edge.central_flow [RUN_FOLDER] --out=DIR [--substeps=4] "
         "[--critical_eigenvalues=3] [--average_window=0] [image_classification flags, e.g. "
         "--activation=tanh --step_size=η --max_steps=T ...]")
OWN = ("out", "substeps", "critical_eigenvalues", "average_window")
NOT_FROM_THE_RUN = OWN + (compilation_cache.FLAG,)      # flags a run's config never sets here


def define_flags(fv: flags.FlagValues) -> None:
  """The command's own flags, beside image_classification's."""
  on = {"flag_values": fv}
  flags.DEFINE_string("out", None, "Folder for central_flow.pdf and central_flow.pkl.", **on)
  flags.DEFINE_integer("substeps", 4, "Euler substeps of the flows per GD step.", **on)
  flags.DEFINE_integer("critical_eigenvalues", 3, "k: the top-k Hessian eigenvalues the central "
                       "flow may hold at 2/η (Σ is k×k).", **on)
  flags.DEFINE_integer("average_window", 0, "Steps of GD's centred running-average loss; 0: one "
                       "cycle of GD's loss at the edge, measured (at least 20).", **on)


def run_config(folder: str) -> tuple[dict | None, str | None]:
  """(the config of the finished run in `folder`, None) or (None, why it cannot be used)."""
  if not os.path.isdir(folder):
    return None, f"run folder {folder} does not exist"
  raw_file = sources.pickle_in(folder, {})
  if raw_file is None:
    return None, f"run folder {folder} holds no run pickle (raw.pkl or one *.pkl)"
  try:
    raw = records.read_raw(raw_file)
  except Exception as e:  # pylint: disable=broad-except  # a damaged pickle raises any kind
    return None, f"{raw_file} cannot be read as a pickle ({type(e).__name__})"
  sound, detail = records.raw_status(raw)
  if not sound or not isinstance(raw.get("config"), dict):
    return None, f"{raw_file} is not a sound run pickle ({detail})"
  if not raw.get("final"):
    return None, f"{raw_file} is a run that has not finished"
  return raw["config"], None


def apply_config(fv: flags.FlagValues, config: dict) -> None:
  """Every task flag of `config` the command line did not give, as if given (so that no
  flag-dependent default, e.g. the full-dataset --batch_size, replaces it)."""
  for name, value in config.items():
    if name in fv and name not in NOT_FROM_THE_RUN and not fv[name].present:
      fv[name].value = value
      fv[name].present = 1


def problems(fv: flags.FlagValues) -> list[str]:
  """Every problem with the flags, before anything is loaded (one line each)."""
  found = cli.problems(TASK, fv)
  if fv.rho != 0:
    found.append(f"--rho={fv.rho}: the central flow here models gradient descent; use --rho=0")
  if fv.optimizer != "sgd" or fv.weight_decay != 0:
    found.append(f"--optimizer={fv.optimizer} --weight_decay={fv.weight_decay}: the central "
                 "flow here models plain GD; use --optimizer=sgd --weight_decay=0")
  if fv.lr_schedule != "constant" or fv.warmup_steps:
    found.append("the central flow needs a constant step size (--lr_schedule=constant, no "
                 "--warmup_steps)")
  full = (fv.mini_training_set_num_batches == 1
          or fv.batch_size == image_specs.TRAIN_SIZES.get(fv.dataset))
  if not full or fv.accumulate_batches != 1 or fv.augment != "none":
    found.append("the central flow models full-batch GD: give --mini_training_set_num_batches=1 "
                 "(or the whole training set as --batch_size), no --accumulate_batches or "
                 "--augment")
  if fv.nn_architecture in BATCH_NORM:
    found.append(f"--nn_architecture={fv.nn_architecture}: BatchNorm's statistics make the loss "
                 "no function of the parameters alone; use MLP or CNN")
  if fv.max_steps is None or fv.max_steps < 1:
    found.append(f"give --max_steps, the GD steps to integrate over (got {fv.max_steps})")
  for name in ("substeps", "critical_eigenvalues"):
    if fv[name].value < 1:
      found.append(f"--{name} must be at least 1, got {fv[name].value}")
  if fv.average_window < 0:
    found.append(f"--average_window must be 0 (one measured cycle) or positive, got "
                 f"{fv.average_window}")
  if not fv.out:
    found.append("give --out=DIR, the folder for central_flow.pdf and central_flow.pkl")
  elif (reason := records.folder_problem(fv.out)):
    found.append(f"--out={fv.out}: {reason}")
  return found


def flag_values() -> flags.FlagValues:
  """Every flag of the command (the image task's and its own), on a FlagValues of its own."""
  fv = cli.task_flags(TASK)
  define_flags(fv)
  return fv


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name) and runs the command; returns the exit code."""
  fv = flag_values()
  return cli.command(PROG, USAGE, fv, argv, lambda rest: command(fv, rest))


def command(fv: flags.FlagValues, rest: list[str]) -> int:
  """Reads RUN_FOLDER (if any), checks the flags, then integrates and writes the outputs."""
  if len(rest) > 1:
    return cli.fail(PROG, [f"at most one RUN_FOLDER, got {rest}"])
  if rest:
    config, reason = run_config(rest[0])
    if reason:
      return cli.fail(PROG, [reason])
    apply_config(fv, config)
  found = problems(fv)
  if found:
    return cli.fail(PROG, found)
  compilation_cache.install()
  from sam_edge.flows import study  # pylint: disable=import-outside-toplevel  # jax
  return study.run(cli_flags.flag_values(fv),
                   log=lambda line: print(f"{PROG}: {line}", flush=True))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
