"""`python -m sam_edge.compare PATHS... --out=DIR`: a summary table and overlays of finished (or
half-finished) runs.

PATHS are run folders, raw pickles, the reference's raw.txt files, or sweep folders, in any mix.
Writes summary.csv, cells.csv (each metric's mean, std, n and 95% t-interval over the seeds of a
cell), lambda1_over_edge.pdf, loss_curves.pdf, metric_vs_<axis>.pdf (--error_bars=ci95|minmax)
and, with --phase_axes, phase.pdf into DIR. With --select_by=validation_error --select_over=rho
the value of rho with the lowest mean validation error is chosen per setting of the other axes,
and its test metrics are written to selection.csv and printed (studies/selection.py). With
--global_metrics=curve,cka,dist,ensemble_error the runs' final parameters (`--params_output`)
are read and the metrics between runs of a cell join summary.csv (studies/global_metrics.py);
with --evaluations=FILE.json the post-hoc evaluations of `python -m sam_edge.evaluate
--out=FILE.json` join it too (studies/evaluated.py: columns such as train_loss_full,
lambda1_post), each run's entry matched by its folder. See docs/commands/compare.md.

Every pickle is checked against its `final.records_sha256`: a run whose pickle does not match is
left out of the report, with one line on stderr naming it; the exit code is then 1 (0 when every
run was sound, 2 for bad input).
"""

import dataclasses
import sys
from typing import Callable

from absl import flags

from sam_edge.cli import compilation_cache
from sam_edge.cli import main as cli
from sam_edge.studies import evaluated, report, selection, sources, summary

PROG = "compare"
USAGE = ("python -m sam_edge.compare PATHS... --out=DIR [--phase_axes=a,b] [--phase_metric=m] "
         "[--x_axis=auto|step|time] [--error_bars=ci95|minmax] [--select_by=m --select_over=a] "
         "[--global_metrics=curve,cka,dist,ensemble_error [--group_by=a,b]] "
         "[--evaluations=FILE.json]")


GLOBAL_ONLY = ("group_by", "curve_pairs", "curve_epochs", "curve_batch_size", "curve_step_size",
               "curve_momentum", "curve_metric", "curve_split", "cka_examples", "cka_data",
               "cka_mixup_alpha", "global_seed", "manual_dir",
               "tfds_data_dir")                 # flags that only --global_metrics reads


def define_global_flags(fv: flags.FlagValues) -> None:
  """The flags of the metrics between runs (defaults: the taxonomy's, Yang et al. 2021)."""
  on = {"flag_values": fv}
  flags.DEFINE_list("global_metrics", [], "Metrics between the runs of a cell (runs differing "
                    "only in --seed), averaged over its pairs: curve (mc and line_barrier), cka, "
                    "dist; and ensemble_error (the test error of their averaged softmax). Needs "
                    "each run's --params_output.", **on)
  flags.DEFINE_list("group_by", [], "Cells are the runs sharing these axes (default: every "
                    "axis but seed).", **on)
  flags.DEFINE_integer("curve_pairs", 1, "Pairs of each cell connected by a trained curve.", **on)
  flags.DEFINE_integer("curve_epochs", 100, "Epochs of SGD on the Bezier bend.", **on)
  flags.DEFINE_integer("curve_batch_size", 128, "Batch of the bend's SGD (and of the BatchNorm "
                       "statistics recomputed along the curve).", **on)
  flags.DEFINE_float("curve_step_size", 0.01, "Initial step size of the bend's SGD (constant to "
                     "half the epochs, then down to 1% of it at 90%).", **on)
  flags.DEFINE_float("curve_momentum", 0.9, "Momentum of the bend's SGD.", **on)
  flags.DEFINE_enum("curve_metric", "error", ["error", "loss"], "E(t) of mc and the line "
                    "barrier: the error or the loss (evaluation mode) on --curve_split.", **on)
  flags.DEFINE_enum("curve_split", "train", ["train", "test"], "Where E(t) is measured: the "
                    "training or the test set (the bend is always trained on the training "
                    "set, BatchNorm statistics recomputed there).", **on)
  flags.DEFINE_integer("cka_examples", 768, "Examples (the first ones of --cka_data) whose "
                       "softmax outputs CKA compares.", **on)
  flags.DEFINE_enum("cka_data", "train", ["train", "test", "mixup"], "CKA's examples: the "
                    "training set, the test set, or training examples mixed as the taxonomy's "
                    "mixup CKA (batches of 128, one λ ~ Beta(α, α) and one permutation each).",
                    **on)
  flags.DEFINE_float("cka_mixup_alpha", 16.0, "α of --cka_data=mixup (the taxonomy's 16).", **on)
  flags.DEFINE_integer("global_seed", 0, "Seed of the bend's batches and t's, and of the "
                       "mixup's λ and permutations.", **on)
  flags.DEFINE_string("manual_dir", None, "Rebuild the runs' data from this folder instead of "
                      "the one in their config.", **on)
  flags.DEFINE_string("tfds_data_dir", None, "Rebuild the runs' data from this TFDS folder "
                      "instead of the one in their config.", **on)


def flag_values() -> flags.FlagValues:
  """Every flag of the command, on a FlagValues of its own."""
  fv = flags.FlagValues()
  report.define_flags(fv)
  selection.define_flags(fv)
  define_global_flags(fv)
  flags.DEFINE_list("evaluations", [], "JSON files of `python -m sam_edge.evaluate --out`: their "
                    "values join summary.csv (train_loss_full, train_error_full, lambda1_post, "
                    "trace_post, ...), each entry in the row of the run whose folder it names.",
                    flag_values=fv)
  return fv


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name), reads the runs and writes the report."""
  fv = flag_values()
  return cli.command(PROG, USAGE, fv, argv, lambda paths: compare(fv, paths))


def global_settings(fv: flags.FlagValues):
  """(the settings of --global_metrics, or None when it is off; the problems of its flags)."""
  if not fv.global_metrics:
    given = [f"--{name}" for name in GLOBAL_ONLY if fv[name].present]
    return None, ([f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                   "--global_metrics, which is not given"] if given else [])
  compilation_cache.install()
  from sam_edge.studies import connectivity, global_metrics  # pylint: disable=import-outside-toplevel
  curve = connectivity.CurveSettings(epochs=fv.curve_epochs, batch_size=fv.curve_batch_size,
                                     step_size=fv.curve_step_size, momentum=fv.curve_momentum)
  settings = global_metrics.Settings(
      metrics=tuple(fv.global_metrics), curve=curve, curve_pairs=fv.curve_pairs,
      curve_metric=fv.curve_metric, cka_examples=fv.cka_examples, curve_split=fv.curve_split,
      cka_data=fv.cka_data, cka_mixup_alpha=fv.cka_mixup_alpha, group_by=tuple(fv.group_by),
      seed=fv.global_seed, manual_dir=fv.manual_dir, tfds_data_dir=fv.tfds_data_dir)
  return settings, global_metrics.problems(settings)


def compare(fv: flags.FlagValues, paths: list[str]) -> int:
  """Reads the runs under `paths` and writes the report into --out."""
  if not fv.out:
    return cli.fail(PROG, ["--out=DIR is required"])
  if not paths:
    return cli.fail(PROG, [f"give at least one path: {USAGE}"])
  between_settings, found = global_settings(fv)
  found += selection.pair_problems(fv.select_by, fv.select_over)
  if found:
    return cli.fail(PROG, found)
  files = {path: evaluated.read(path) for path in fv.evaluations}   # InputError: one line
  try:
    runs, sweep_axes = sources.read_paths(paths)
  except (sources.SourceError, OSError, ValueError) as e:
    return cli.fail(PROG, [str(e)])
  if not runs:
    return cli.fail(PROG, ["no runs found under " + " ".join(paths)])
  sound = report.sound_runs(runs, log=lambda line: print(f"{PROG}: {line}", file=sys.stderr))
  if not sound:
    return cli.fail(PROG, ["every run is unsound (see the lines above): nothing to compare"],
                    code=1)
  log = lambda line: print(f"{PROG}: {line}", flush=True)
  options = dataclasses.replace(report.options_of(fv), select_by=fv.select_by,
                                select_over=fv.select_over)
  joined = evaluations_joined(files, sound, log) if files else {}
  added = between_columns(between_settings, sound)
  group_by = between_settings.group_by if between_settings else ()
  found = problems(options, sound, sweep_axes, group_by,
                   added | {c for values in joined.values() for c in values})
  if found:
    return cli.fail(PROG, found)
  extra = extra_columns(between_settings, sound, summary.choose_axes(sound, sweep_axes), joined,
                        log)
  try:
    chosen = report.write(sound, sweep_axes, fv.out, options, log=log, extra=extra)
  except report.OptionsError as e:
    return cli.fail(PROG, [str(e)])
  if chosen is not None:
    print(selection.table(chosen), flush=True)
  return 0 if len(sound) == len(runs) else 1


def between_columns(settings, runs: list[sources.Run]) -> set[str]:
  """The columns the metrics between runs fill (none without --global_metrics); InputError
  unless every run is a finished run of ours."""
  if settings is None:
    return set()
  from sam_edge.studies import global_metrics  # pylint: disable=import-outside-toplevel
  global_metrics.check_runs(runs)
  return set(global_metrics.columns(settings))


def problems(options: report.Options, runs: list[sources.Run], sweep_axes: list[str],
             group_by: tuple[str, ...], added: set[str]) -> list[str]:
  """Problems of the options against the runs, before any long work: the report's options
  (`report.check_options`), --group_by, and a --select_by metric that no run has (neither its
  own column nor one of the columns `added` by the metrics between runs or the evaluations)."""
  axes = summary.choose_axes(runs, sweep_axes)
  found = report.check_options(options, axes)
  group = [a for a in group_by if a not in axes]
  if group:
    found.append(f"--group_by: {', '.join(group)} is not an axis of the runs")
  if options.select_by and not found:
    rows = [summary.row(r, axes) for r in runs]
    present = {m for m in summary.METRICS if summary.has_metric(rows, m)} | added
    found += selection.metric_problems(options.select_by, present)
  return found


def evaluations_joined(files: dict[str, list[dict]], runs: list[sources.Run],
                       log: Callable[[str], None]) -> dict[str, dict]:
  """{run name: {column: value}} of the evaluation files' entries for `runs` (`evaluated.join`;
  InputError, one line, when no entry matches a run); one line counts the entries of other
  runs."""
  joined, unmatched = evaluated.join(files, {r.name: r.folder for r in runs})
  if unmatched:
    log(f"--evaluations: {unmatched} evaluated run{'s are' if unmatched > 1 else ' is'} not "
        "among the runs compared")
  return joined


def extra_columns(settings, runs: list[sources.Run], axes: list[str], joined: dict[str, dict],
                  log: Callable[[str], None]) -> dict[str, dict]:
  """{run name: {column: value}}: the metrics between runs (`global_metrics.compute`, with
  --global_metrics) and the evaluations `joined`, for `report.write`."""
  found: dict[str, dict] = {}
  if settings is not None:
    from sam_edge.studies import global_metrics  # pylint: disable=import-outside-toplevel
    found = global_metrics.compute(runs, axes, settings, log)
  return {name: {**found.get(name, {}), **joined.get(name, {})}
          for name in set(found) | set(joined)}


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
