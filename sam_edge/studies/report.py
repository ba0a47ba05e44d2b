"""Everything a comparison writes into one folder, from the runs found under some paths.

    summary.csv              one row per run (see summary.py)
    lambda1_over_edge.pdf    λ1/edge against step (or time) for every run (overlay.py)
    loss_curves.pdf          the training-loss curves (overlay.py)
    metric_vs_<axis>.pdf     the final metrics against each non-seed axis (trends.py)
    phase.pdf                with phase axes: heat maps of every metric over two axes (phase.py)

Both `compare` and the end of a `sweep` call `write`.
"""

import dataclasses
import os
from typing import Callable, Optional

from absl import flags

from sam_edge.plots import figure
from sam_edge.studies import overlay, phase, sources, summary, trends

SUMMARY = "summary.csv"
RATIO_PDF = "lambda1_over_edge.pdf"
LOSS_PDF = "loss_curves.pdf"
PHASE_PDF = "phase.pdf"
PHASE_COLUMNS = 3                      # panels per row of phase.pdf


@dataclasses.dataclass(frozen=True)
class Options:
  """What to draw besides the fixed outputs."""
  phase_axes: tuple[str, ...] = ()
  phase_metric: Optional[str] = None     # None: every metric some run has
  x_axis: str = "auto"                   # auto, step or time


def define_flags(fv: flags.FlagValues) -> None:
  """--out, --phase_axes, --phase_metric, --x_axis on `fv` (`sweep` and `compare` share them)."""
  on = {"flag_values": fv}
  flags.DEFINE_string("out", None, "Folder for summary.csv and the PDFs (for a sweep: also the "
                      "run folders).", **on)
  flags.DEFINE_list("phase_axes", [], "Two axes a,b: write phase.pdf, heat maps of the "
                    "metrics over them (mean over seeds; a to the right, b downwards).", **on)
  flags.DEFINE_string("phase_metric", None, "Only this metric in the phase plot: a metric "
                      "column of summary.csv, e.g. test_error, final_lambda1, mc, cka, "
                      "train_loss_full (default: every metric some run has).", **on)
  flags.DEFINE_enum("x_axis", "auto", list(overlay.X_AXES), "x axis of the overlays: step, time "
                    "(training seconds), or auto (time when a reference raw.txt is among the "
                    "runs, since it has no steps; else step).", **on)


def options_of(fv: flags.FlagValues) -> Options:
  """The report options from parsed flags."""
  return Options(phase_axes=tuple(fv.phase_axes), phase_metric=fv.phase_metric, x_axis=fv.x_axis)


def metric_pdf(axis: str) -> str:
  """The file name of the metrics-against-`axis` figure."""
  return f"metric_vs_{axis}.pdf"


def check_options(options: Options, axes: list[str]) -> list[str]:
  """Problems of the options against the available axes (one line each)."""
  found = []
  if options.x_axis not in overlay.X_AXES:
    found.append(f"--x_axis must be one of {', '.join(overlay.X_AXES)}, got {options.x_axis}")
  if options.phase_axes or options.phase_metric:
    found += phase.check(list(options.phase_axes), options.phase_metric or "", axes)
  return found


def sound_runs(runs: list[sources.Run], log: Callable[[str], None]) -> list[sources.Run]:
  """The runs whose pickles are sound; one line for each run left out (a pickle whose records
  and losses do not match its `final.records_sha256`), naming it and what is wrong."""
  for run in runs:
    if not run.sound:
      log(f"skipping {run.name} ({run.source}): {run.check}")
  return [run for run in runs if run.sound]


def write(runs: list[sources.Run], sweep_axes: list[str], out: str, options: Options,
          log: Callable[[str], None] = print,
          between: Optional[Callable[[list[sources.Run], list[str]], dict]] = None
          ) -> list[str]:
  """Writes the summary and the figures of `runs` into `out`; returns the paths written.
  `between(runs, axes)`, when given, returns {run name: {column: value}} of metrics between runs
  (`global_metrics.compute`), added to the runs' rows.

  Raises `phase.PhaseError` when the phase options name axes the runs do not have.
  """
  axes = summary.choose_axes(runs, sweep_axes)
  problems = check_options(options, axes)
  if problems:
    raise phase.PhaseError("; ".join(problems))
  os.makedirs(out, exist_ok=True)
  rows = [summary.row(r, axes) for r in runs]
  if between is not None:
    extra = between(runs, axes)
    for r in rows:
      r.update(extra.get(r["run"], {}))
  written = [os.path.join(out, SUMMARY)]
  summary.write_csv(written[0], rows, axes)
  with_data = [r for r in runs if r.kind != "pending"]
  x_axis = overlay.resolve_x_axis(with_data, options.x_axis)
  figures = {RATIO_PDF: ([overlay.ratio_panel(with_data, axes, x_axis)], None),
             LOSS_PDF: ([overlay.loss_panel(with_data, axes, x_axis)], None)}
  for axis in axes:
    if axis != summary.SEED:
      found = trends.metric_panels(rows, axis, axes)
      if found is not None:
        figures[metric_pdf(axis)] = found
  if options.phase_axes:
    a, b = options.phase_axes
    figures[PHASE_PDF] = phase.phase_heatmaps(rows, a, b, options.phase_metric, axes)
  for name, (panels, title) in figures.items():
    path = os.path.join(out, name)
    columns = min(len(panels), PHASE_COLUMNS) if name == PHASE_PDF else len(panels)
    figure.write(path, panels, columns=max(1, columns) if title else 1, title=title)
    written.append(path)
  pending = len(runs) - len(with_data)
  log(f"summary of {len(runs)} runs" + (f" ({pending} without data yet)" if pending else "")
      + f" in {out}: " + ", ".join(os.path.basename(p) for p in written))
  return written
