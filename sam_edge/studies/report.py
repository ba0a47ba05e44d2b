"""Everything a comparison writes into one folder, from the runs found under some paths (what
`compare` and the end of a `sweep` do; docs/commands/compare.md): summary.csv (summary.py),
cells.csv (cells.py), with a selection selection.csv (selection.py), lambda1_over_edge.pdf and
loss_curves.pdf (overlay.py), metric_vs_<axis>.pdf for each non-seed axis (trends.py) and, with
phase axes, phase.pdf (phase.py); and the flags `sweep` and `compare` share.
"""

import dataclasses
import os
from typing import Callable, Optional

from absl import flags

from sam_edge.plots import figure
from sam_edge.studies import cells, overlay, phase, selection, sources, summary, trends

SUMMARY = "summary.csv"
CELLS = "cells.csv"
RATIO_PDF = "lambda1_over_edge.pdf"
LOSS_PDF = "loss_curves.pdf"
PHASE_PDF = "phase.pdf"
PHASE_COLUMNS = 3                      # panels per row of phase.pdf


class OptionsError(ValueError):
  """Report options (--x_axis, --error_bars, the phase plot's, the selection's) that do not fit
  the runs' axes (one line)."""


@dataclasses.dataclass(frozen=True)
class Options:
  """What to draw besides the fixed outputs."""
  phase_axes: tuple[str, ...] = ()
  phase_metric: Optional[str] = None     # None: every metric some run has
  x_axis: str = "auto"                   # auto, step or time
  error_bars: str = "ci95"               # the trend figures' bars: ci95 or minmax
  select_by: Optional[str] = None        # with select_over: selection.csv (selection.py)
  select_over: Optional[str] = None


def define_flags(fv: flags.FlagValues) -> None:
  """--out, --phase_axes, --phase_metric, --x_axis, --error_bars on `fv` (sweep's, compare's)."""
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
  flags.DEFINE_enum("error_bars", "ci95", list(trends.ERROR_BARS), "Bars of the "
                    "metric_vs_<axis>.pdf figures around the mean over seeds: ci95 (the 95% "
                    "Student-t interval of the mean) or minmax (the seeds' range).", **on)


def options_of(fv: flags.FlagValues) -> Options:
  """The options of the flags of `define_flags` (`compare` adds its selection's)."""
  return Options(phase_axes=tuple(fv.phase_axes), phase_metric=fv.phase_metric, x_axis=fv.x_axis,
                 error_bars=fv.error_bars)


def metric_pdf(axis: str) -> str:
  """The file name of the metrics-against-`axis` figure."""
  return f"metric_vs_{axis}.pdf"


def check_options(options: Options, axes: list[str]) -> list[str]:
  """Problems of the options against the available axes (one line each)."""
  found = [f"--{flag} must be one of {', '.join(allowed)}, got {value}"
           for flag, value, allowed in (("x_axis", options.x_axis, overlay.X_AXES),
                                        ("error_bars", options.error_bars, trends.ERROR_BARS))
           if value not in allowed]
  if options.phase_axes or options.phase_metric:
    found += phase.check(list(options.phase_axes), options.phase_metric or "", axes)
  return found + selection.flag_problems(options.select_by, options.select_over, axes)


def sound_runs(runs: list[sources.Run], log: Callable[[str], None]) -> list[sources.Run]:
  """The runs whose pickles are sound; one line for each run left out (a pickle whose records
  and losses do not match its `final.records_sha256`), naming it and what is wrong."""
  for run in runs:
    if not run.sound:
      log(f"skipping {run.name} ({run.source}): {run.check}")
  return [run for run in runs if run.sound]


def write(runs: list[sources.Run], sweep_axes: list[str], out: str, options: Options,
          log: Callable[[str], None] = print, extra: Optional[dict[str, dict]] = None
          ) -> Optional[selection.Selection]:
  """Writes the tables and the figures of `runs` into `out`; returns the selection (None
  without one). `extra` ({run name: {column: value}}: the metrics between runs, the evaluations)
  joins the runs' rows. Raises `OptionsError` when the options do not fit the runs' axes."""
  axes = summary.choose_axes(runs, sweep_axes)
  problems = check_options(options, axes)
  if problems:
    raise OptionsError("; ".join(problems))
  os.makedirs(out, exist_ok=True)
  rows = [{**summary.row(r, axes), **(extra or {}).get(r.name, {})} for r in runs]
  paths = [os.path.join(out, name) for name in (SUMMARY, CELLS)]
  summary.write_table(paths[0], summary.columns(axes, rows), rows)
  cell_rows = cells.write_csv(paths[1], rows, axes)
  chosen = None
  if options.select_by and options.select_over:
    chosen = selection.select(cell_rows, axes, cells.metrics(rows, axes), options.select_by,
                              options.select_over)
    paths.append(os.path.join(out, selection.FILE))
    summary.write_table(paths[-1], chosen.columns(), chosen.rows)
  with_data = [r for r in runs if r.kind != "pending"]
  paths += write_figures(with_data, rows, axes, out, options)
  pending = len(runs) - len(with_data)
  log(f"summary of {len(runs)} runs" + (f" ({pending} without data yet)" if pending else "")
      + f" in {out}: " + ", ".join(os.path.basename(p) for p in paths))
  return chosen


def write_figures(runs: list[sources.Run], rows: list[dict], axes: list[str], out: str,
                  options: Options) -> list[str]:
  """Writes the overlays of the `runs`, the trend figures and the phase plot; their paths."""
  x_axis = overlay.resolve_x_axis(runs, options.x_axis)
  figures = {RATIO_PDF: ([overlay.ratio_panel(runs, axes, x_axis)], None),
             LOSS_PDF: ([overlay.loss_panel(runs, axes, x_axis)], None)}
  for axis in summary.non_seed(axes):
    found = trends.metric_panels(rows, axis, axes, options.error_bars)
    if found is not None:
      figures[metric_pdf(axis)] = found
  if options.phase_axes:
    a, b = options.phase_axes
    figures[PHASE_PDF] = phase.phase_heatmaps(rows, a, b, options.phase_metric, axes)
  paths = []
  for name, (panels, title) in figures.items():
    paths.append(os.path.join(out, name))
    columns = min(len(panels), PHASE_COLUMNS) if name == PHASE_PDF else len(panels)
    figure.write(paths[-1], panels, columns=max(1, columns) if title else 1, title=title)
  return paths
