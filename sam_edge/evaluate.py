"""`python -m sam_edge.evaluate RUN_OR_PARAMS...`: saved runs evaluated after training, on one
split: the loss, error and top-5 error of their final parameters, and λ1 and tr(H) of their
loss there (`studies.evaluation` gives each as a formula).

RUN_OR_PARAMS are `--params_output` files, run folders holding one, or sweep folders (every run
in them). Each run is rebuilt from its config (its own network, data, label noise and loss) and
evaluated in evaluation mode (BatchNorm with its running statistics) on --split, over the whole
split or its first --examples. Prints a table; --out=FILE.json keeps one entry per run
(`studies.evaluated`), which `compare --evaluations=FILE.json` joins into summary.csv.

Bad input (a missing path, a folder without a parameters file, a damaged one, an unknown metric,
--examples < 1 or larger than a run's split, a --measure_chunk that does not divide a run's
examples, an unwritable --out, --split=validation for a run without a validation split, ...) is
one line and exit code 2 before any run is evaluated (the splits' sizes come from the runs'
configs and `data.image_specs`, no data read). A problem found only once a run's data is read
(its data files, a split of unknown size) is one line and exit code 2 too, after the runs
evaluated before it are printed and written to --out (a line says the file holds the first k
runs); a crash or an interrupt keeps them the same way. Neither the import nor --help loads jax.
"""

import json
import os
import sys
from typing import Callable, Optional

from absl import flags

from sam_edge import errors, records
from sam_edge.cli import compilation_cache
from sam_edge.cli import main as cli
from sam_edge.studies import evaluated, sources

PROG = "evaluate"
USAGE = ("python -m sam_edge.evaluate RUN_OR_PARAMS... [--split=train|test|validation] "
         "[--metrics=loss,error,top5,lambda1,trace] [--examples=N] [--out=FILE.json]")


def flag_values() -> flags.FlagValues:
  """Every flag of the command, on a FlagValues of its own."""
  fv = flags.FlagValues()
  on = {"flag_values": fv}
  flags.DEFINE_enum("split", "train", list(evaluated.SPLITS), "The examples evaluated: the run's "
                    "training set (label noise included), its test set, or its validation set "
                    "(runs trained with --validation_fraction only).", **on)
  flags.DEFINE_list("metrics", list(evaluated.METRICS), "Some of loss (the run's own loss, "
                    "label smoothing included), error, top5 (with 10 classes or more), lambda1 "
                    "(Lanczos) and trace (Hutch++ with its standard error).", **on)
  flags.DEFINE_integer("examples", None, "Only the split's first N examples (default: all).",
                       **on)
  flags.DEFINE_string("out", None, "Write the evaluations to this JSON file (one entry per "
                      "run), for `compare --evaluations`.", **on)
  flags.DEFINE_integer("seed", 0, "PRNG seed of the Lanczos start and the trace's probes.", **on)
  flags.DEFINE_integer("lanczos_max_steps", None, "Cap on λ1's Lanczos steps (default: the "
                       "run's --lanczos_max_steps).", **on)
  flags.DEFINE_integer("trace_probes", None, "HVPs of the trace estimate (default: the run's "
                       "--trace_probes).", **on)
  flags.DEFINE_integer("measure_chunk", None, "λ1 and the trace over chunks of C examples "
                       "(must divide the examples; default: the run's --measure_chunk).", **on)
  flags.DEFINE_string("manual_dir", None, "The dataset's original files, replacing the run's "
                      "--manual_dir.", **on)
  flags.DEFINE_string("tfds_data_dir", None, "Where TFDS keeps prepared datasets, replacing the "
                      "run's --tfds_data_dir.", **on)
  return fv


def problems(fv: flags.FlagValues, paths: list[str]) -> list[str]:
  """Every problem with the arguments, before anything is read (one line each)."""
  found = [] if paths else [f"give at least one run folder, sweep folder or params file: {USAGE}"]
  found += [f"{p}: no such file or folder" for p in paths if not os.path.exists(p)]
  found += evaluated.metric_problems(fv.metrics)
  for name in ("examples", "lanczos_max_steps", "trace_probes", "measure_chunk"):
    if fv[name].value is not None and fv[name].value < 1:
      found.append(f"--{name}={fv[name].value}: must be at least 1")
  if fv.out:
    why = records.check_writable(fv.out)
    if why:
      found.append(f"--out={fv.out}: {why}")
  return found


def run_folders(paths: list[str]) -> list[tuple[str, str]]:
  """(name, path) of every run to evaluate: a sweep folder's runs (in its order, named by their
  folders), a run folder (its folder's name) or a parameters file (the path as given)."""
  found = []
  for path in paths:
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, sources.SWEEP_FILE)):
      found += [(n, os.path.join(path, n)) for n in sources.sweep_plan(path)[0]]
    elif os.path.isdir(path):
      found.append((os.path.basename(os.path.normpath(path)), path))
    else:
      found.append((path, path))
  return found


def evaluate(fv: flags.FlagValues, paths: list[str]) -> int:
  """Checks the arguments, reads every parameters file, then evaluates the runs one by one."""
  found = problems(fv, paths)
  if found:
    return cli.fail(PROG, found)
  compilation_cache.install()
  from sam_edge.studies import evaluation, trained  # pylint: disable=import-outside-toplevel
  settings = evaluation.Settings(
      split=fv.split, metrics=tuple(fv.metrics), examples=fv.examples, seed=fv.seed,
      lanczos_max_steps=fv.lanczos_max_steps, trace_probes=fv.trace_probes,
      measure_chunk=fv.measure_chunk, manual_dir=fv.manual_dir, tfds_data_dir=fv.tfds_data_dir)
  runs = []
  for name, path in run_folders(paths):            # every file read and checked first
    t = trained.load(path)
    evaluation.check_run(t, fv.split)
    evaluation.check_sizes(t, settings)            # --examples, --measure_chunk: no data read
    runs.append((name, os.path.abspath(os.path.dirname(t.path)), t))
  log = lambda line: print(f"{PROG}: {line}", flush=True)
  entries: list[dict] = []
  failure: Optional[errors.InputError] = None
  try:
    for k, (name, folder, t) in enumerate(runs, 1):
      log(f"run {k}/{len(runs)}: {name} (step {t.step})")
      entries.append(evaluation.entry(t, name, folder, settings, log))
  except errors.InputError as e:                   # found only once a run's data was read
    failure = e
  finally:                                         # a crash or an interrupt: kept too
    keep(fv, entries, len(runs), log)
  return cli.fail(PROG, [str(failure)]) if failure else 0


def keep(fv: flags.FlagValues, entries: list[dict], total: int,
         log: Callable[[str], None]) -> None:
  """Prints the table of `entries` and writes them to --out (when given): all the runs, or the
  first len(entries) when a later one failed (nothing already computed is lost; none evaluated:
  nothing written)."""
  if not entries:
    return
  print(evaluated.table(entries))
  if not fv.out:
    return
  text = json.dumps(evaluated.document(entries), indent=1) + "\n"
  records.atomic_write_bytes(fv.out, text.encode("utf-8"))
  if len(entries) == total:
    log(f"wrote {fv.out}")
  else:
    log(f"wrote {fv.out}: it holds the first {len(entries)} of the {total} runs, those "
        "evaluated before it stopped")


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name) and evaluates the runs."""
  fv = flag_values()
  return cli.command(PROG, USAGE, fv, argv, lambda paths: evaluate(fv, paths))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
