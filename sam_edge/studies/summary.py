"""Runs -> the rows of summary.csv, and the seed groups the plots average over.

The columns (`columns`) are listed in docs/commands/compare.md (What it writes);
`final_lambda1` and `final_trace` are the last measured λ1 and tr H.

`final_train_loss` is the training loss over the run's last epoch: the mean of the losses its
last k steps recorded, k = ⌈N/B⌉ for N training examples and batch size B (1 when either is
unknown; fewer when the run took fewer steps), so one step for full-batch runs; empty when one
of them is not finite. With S the run's last step (its final step count, else its last measured
step), the median is over the records with step >= S/2 of

    λ1 / edge,   edge = the record's `edge` (its method's stability threshold), or `sam_edge`
                 in pickles older than `edge` (equal to 2/η at ρ = 0);

records whose edge is None (no closed form) are left out. Reference raw.txt runs have no steps:
their second half is by training time. Missing values are empty cells.
"""

import csv
import io
import math
import statistics
from typing import Any, Callable, Iterable, Optional

from sam_edge import records as records_lib
from sam_edge.studies import evaluated, sources

SEED = "seed"
# The final metrics on the validation split, in `final` of runs that hold one out.
VALIDATION = ("validation_error", "validation_loss")
# The metrics between runs (`compare --global_metrics`): one value per cell, carried by its runs.
BETWEEN = ("mc", "line_barrier", "cka", "dist", "ensemble_error")
# Columns written only when some run has a value (evaluated.COLUMNS: `compare --evaluations`).
OPTIONAL = (*VALIDATION, "final_train_loss", "final_trace", *BETWEEN, *evaluated.COLUMNS)
METRICS = ("steps", "test_error", "test_loss", "final_lambda1", "median_lambda1_over_edge",
           *OPTIONAL)
AFTER = ("steps", "stopped_because", "test_error", "test_loss", "final_lambda1",
         "median_lambda1_over_edge", "diverged", "source")
# Flags that say where things go, not what is computed: never columns of their own.
BOOKKEEPING = ("checkpoint_dir", "checkpoint_every_minutes", "resume", "tensorboard_dir",
               "tfds_data_dir", "manual_dir", "compilation_cache_dir")


def _finite(x: Any) -> Optional[float]:
  try:
    x = float(x)
  except (TypeError, ValueError):
    return None
  return x if math.isfinite(x) else None


def lambda1(record: dict) -> Optional[float]:
  """λ1 of a record (None if it has none)."""
  eigs = record.get("eigenvalues") or ()
  return _finite(eigs[0]) if eigs else None


def ratio(record: dict) -> Optional[float]:
  """λ1 / edge of a record (edge: `edge`, else `sam_edge` in older pickles), None where either
  is missing or the edge is 0."""
  lam = lambda1(record)
  e = _finite(record["edge"] if "edge" in record else record.get("sam_edge"))
  return lam / e if lam is not None and e else None


def median_ratio_second_half(run: sources.Run) -> Optional[float]:
  """The median of λ1/edge over the records of the second half of training (see above), a
  record placed by its step, or by its training time when it has no step."""
  position = lambda r: r.get("step") if r.get("step") is not None else r.get("time")
  points = [(_finite(position(r)), ratio(r)) for r in run.records]
  points = [(x, y) for x, y in points if x is not None]
  if not points:
    return None
  last = max(x for x, _ in points)
  if run.kind == "pickle" and _finite(run.final.get("steps")) is not None:
    last = max(last, float(run.final["steps"]))
  ys = [y for x, y in points if x >= last / 2 and y is not None]
  return statistics.median(ys) if ys else None


def final_train_loss(run: sources.Run) -> Optional[float]:
  """The mean training loss of the run's last epoch (module doc), None without step losses."""
  losses = run.losses[1]
  if not losses:
    return None
  n = _finite(run.final.get("training_examples"))
  b = _finite(value_of(run, "batch_size"))
  k = max(1, math.ceil(n / b)) if n and b else 1
  last = [_finite(v) for v in losses[-k:]]
  return None if None in last else statistics.fmean(last)


def diverged(run: sources.Run) -> Optional[bool]:
  """Whether the run diverged; None (unknown) for a run with no data or not yet finished."""
  if run.final:
    return run.final.get("stopped_because") == "diverged" or "diverged_at_step" in run.final
  losses = list(run.losses[1]) + [r.get("loss") for r in run.records]
  if any(v is not None and _finite(v) is None for v in losses):
    return True
  return False if run.kind == "reference" else None


def canonical(text: str) -> str:
  """A value as text that compares equal across sources: numbers as `0`, `0.05`, `1000`
  (typed `0`, `0.0` and config 0.0 agree), anything else unchanged."""
  try:
    x = float(text)
  except ValueError:
    return text
  if not math.isfinite(x):
    return repr(x)
  return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)


def value_of(run: sources.Run, flag: str) -> Optional[str]:
  """The run's value of `flag` as text (see `canonical`): as in its command, else its config."""
  if flag in run.values:
    return canonical(run.values[flag])
  value = run.config.get(flag)
  if value is None:
    return None
  return str(value) if isinstance(value, (bool, list, tuple, dict)) else canonical(str(value))


def choose_axes(runs: list[sources.Run], sweep_axes: list[str]) -> list[str]:
  """The swept axes, then every other flag with at least two values among the runs."""
  names = sorted({n for r in runs for n in [*r.config, *r.values]} - {*sweep_axes, *BOOKKEEPING})
  return [*sweep_axes, *(n for n in names if not n.endswith("_output")
                         and len({value_of(r, n) for r in runs} - {None}) > 1)]


def last(run: sources.Run, value: Callable[[dict], Optional[float]]) -> Optional[float]:
  """The run's last record value `value(record)` that is not None (None if none)."""
  return next((v for v in map(value, reversed(run.records)) if v is not None), None)


def row(run: sources.Run, axes: list[str]) -> dict[str, Any]:
  """The summary row of one run (None for a missing value)."""
  final = ("steps", "stopped_because", "test_error", "test_loss", *VALIDATION)
  return {
      "run": run.name, **{a: value_of(run, a) for a in axes},
      **{key: run.final.get(key) for key in final},
      "final_lambda1": last(run, lambda1),
      "median_lambda1_over_edge": median_ratio_second_half(run),
      "diverged": diverged(run), "source": run.source,
      "final_trace": last(run, lambda r: _finite(r.get("trace"))),
      "final_train_loss": final_train_loss(run)}


def columns(axes: list[str], rows: list[dict[str, Any]]) -> list[str]:
  """The CSV header: run, the axes, the fixed columns, then the OPTIONAL ones some row has."""
  extra = [c for c in OPTIONAL if any(r.get(c) is not None for r in rows)]
  return ["run", *axes, *AFTER[:-1], *extra, AFTER[-1]]


def cell_text(value: Any) -> str:
  """A value as a CSV cell: empty for None, `true`/`false` for booleans, else its text."""
  if value is None:
    return ""
  if isinstance(value, bool):
    return "true" if value else "false"
  return str(value)


def table_text(header: list[str], rows: list[dict[str, Any]]) -> str:
  """CSV text of `header` and each row's values of its columns (`cell_text`)."""
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for r in rows:
    writer.writerow([cell_text(r.get(c)) for c in header])
  return buf.getvalue()


def write_table(path: str, header: list[str], rows: list[dict[str, Any]]) -> None:
  """Writes `table_text` of `header` and `rows` into `path` atomically."""
  records_lib.atomic_write_bytes(path, table_text(header, rows).encode("utf-8"))


def non_seed(axes: list[str]) -> list[str]:
  """Every axis but the seed: the axes a cell (runs differing only in their seed) is keyed by."""
  return [a for a in axes if a != SEED]


def groups(items: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
  """The items by `key(item)`, in the order of each group's first item."""
  found: dict[Any, list[Any]] = {}
  for item in items:
    found.setdefault(key(item), []).append(item)
  return found


def numeric(values: list[Optional[str]]) -> Optional[list[float]]:
  """The values as floats if every non-missing one parses, else None."""
  try:
    return [float(v) if v is not None else math.nan for v in values]
  except ValueError:
    return None


def sort_values(values: set) -> list:
  """Axis values in numeric order where they are all numbers, else as text."""
  values = [v for v in values if v is not None]
  nums = numeric(values)
  return sorted(values) if nums is None else [v for _, v in sorted(zip(nums, values))]


def metric_values(rows: list[dict[str, Any]], metric: str) -> list[float]:
  """The finite values of `metric` among `rows`."""
  return [v for v in (_finite(r.get(metric)) for r in rows) if v is not None]


def has_metric(rows: list[dict[str, Any]], metric: str) -> bool:
  """Whether any row has a finite `metric`."""
  return bool(metric_values(rows, metric))
