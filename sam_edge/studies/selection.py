"""Choosing one value of an axis by a held-out metric, and reporting the test metrics there: the
protocol of the SAM papers, where ρ is chosen on a validation split
(`compare --select_by=validation_error --select_over=rho`).

For each setting G of the other non-seed axes, among the cells (`cells.py`) of G with a finite
mean the chosen value of the selected axis s is

    s*(G) = argmin_v  mean{ select_by(run) : run in G, s(run) = v }      (mean over seeds),

a tie going to the first value in axis order. The row of G is the chosen cell's row of cells.csv
restricted to n, the select_by metric and the test-set metrics some cell has (test_*,
ensemble_error); a setting none of whose cells has a finite mean gets a row with an empty s.
"""

import dataclasses
from typing import Any, Optional

from absl import flags

from sam_edge.studies import cells, evaluated, summary

FILE = "selection.csv"
TEST_PREFIX = "test_"
ALSO_TEST = ("ensemble_error",)          # test-set metrics not named test_*


def define_flags(fv: flags.FlagValues) -> None:
  """--select_by and --select_over on `fv`."""
  on = {"flag_values": fv}
  flags.DEFINE_string("select_by", None, "With --select_over: the metric column of summary.csv "
                      "(e.g. validation_error) whose lowest mean over seeds chooses the value "
                      "of --select_over in each cell of the other axes; writes selection.csv "
                      "and prints it.", **on)
  flags.DEFINE_string("select_over", None, "With --select_by: the axis (e.g. rho) whose value is "
                      "chosen per cell of the other non-seed axes.", **on)


def pair_problems(by: Optional[str], over: Optional[str]) -> list[str]:
  """One line when only one of --select_by and --select_over is given."""
  if bool(by) == bool(over):
    return []
  given, missing = ("select_by", "select_over") if by else ("select_over", "select_by")
  return [f"--{given} needs --{missing}"]


def flag_problems(by: Optional[str], over: Optional[str], axes: list[str]) -> list[str]:
  """Problems of --select_by and --select_over against the runs' axes (one line each)."""
  if not by or not over:
    return pair_problems(by, over)
  found = []
  if over == summary.SEED or over not in axes:
    others = ", ".join(summary.non_seed(axes)) or "none"
    found.append(f"--select_over: {over} is not an axis of the runs other than seed "
                 f"(axes: {others})")
  if by not in summary.METRICS:
    found.append(f"--select_by must be a metric column of summary.csv "
                 f"({', '.join(summary.METRICS)}), got {by}")
  return found


def metric_problems(by: Optional[str], present: set[str]) -> list[str]:
  """One line when --select_by names a metric no run has (`present`: the columns some run has
  a value of, or will have once the metrics between runs and the evaluations are joined)."""
  if not by or by in present:
    return []
  hint = (" (runs record it when they hold out a validation split: --validation_fraction)"
          if by in summary.VALIDATION else "")
  return [f"--select_by={by}: no run compared has {by}{hint}"]


@dataclasses.dataclass(frozen=True)
class Selection:
  """The chosen cells: one row per setting of `others` (module doc)."""
  by: str
  over: str
  others: list[str]
  reported: list[str]                     # the metrics reported: `by`, then the test metrics
  rows: list[dict[str, Any]]

  def columns(self) -> list[str]:
    """The header of selection.csv."""
    return [*self.others, self.over, cells.N, *cells.stat_columns(self.reported)]


def select(cell_rows: list[dict[str, Any]], axes: list[str], names: list[str], by: str,
           over: str) -> Selection:
  """The chosen cells among `cell_rows` (`cells.table`'s, in its order; `names` its metrics)."""
  others = [a for a in summary.non_seed(axes) if a != over]
  reported = [by, *(m for m in names if m != by and (m.startswith(TEST_PREFIX) or m in ALSO_TEST)
                    and any(r.get(cells.stat_column(m, "n")) for r in cell_rows))]
  chosen = Selection(by, over, others, reported, [])
  mean = cells.stat_column(by, "mean")
  settings = summary.groups(cell_rows, lambda r: tuple(r.get(a) for a in others))
  for key, members in settings.items():
    candidates = [r for r in members if r.get(mean) is not None]
    best = min(candidates, key=lambda r: r[mean]) if candidates else dict(zip(others, key))
    chosen.rows.append({c: best.get(c) for c in chosen.columns()})
  return chosen


def _interval(row: dict[str, Any], metric: str) -> str:
  """`mean ± ci95` of `metric` in `row` (4 significant digits; the mean alone for one run)."""
  mean, ci = (row.get(cells.stat_column(metric, s)) for s in ("mean", "ci95"))
  if mean is None:
    return "–"
  return f"{mean:.4g}" + (f" ± {ci:.3g}" if ci is not None else "")


def table(chosen: Selection) -> str:
  """The selection as a text table: the axes, n, and each reported metric's mean ± ci95."""
  header = [*chosen.others, chosen.over, cells.N, *chosen.reported]
  body = [[summary.cell_text(r.get(a)) or "–" for a in chosen.others + [chosen.over, cells.N]]
          + [_interval(r, m) for m in chosen.reported] for r in chosen.rows]
  what = f"per setting of {', '.join(chosen.others)}" if chosen.others else "over all runs"
  title = (f"{chosen.over} chosen {what} by the lowest mean {chosen.by} over seeds; "
           "each metric: mean ± half-width of its 95% t-interval")
  return "\n".join([title, *evaluated.aligned([header, *body])])
