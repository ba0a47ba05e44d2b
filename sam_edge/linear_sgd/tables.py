"""A CSV file as the inputs and target of the power-law study (`--data=csv`), read and checked
in NumPy (no jax): every problem is an `InputError` of one line naming the file, the column and,
for a bad value, its line.

The file is UTF-8 text (ASCII included; a byte-order mark is dropped), comma-separated, with a
header row naming the columns (names stripped of surrounding blanks, no two alike); blank lines
are skipped and every other row must have as many fields as the header. The target is
`--target_column`: one column, or several whose mean is the target (the paper's code takes the
mean of SGEMM's four timings). The features are `--feature_columns` or, by default:

* for a layout the paper's code reads (`LAYOUTS`: UCI Bike-Sharing's `hour.csv` and `day.csv`,
  UCI SGEMM's `sgemm_product.csv`, recognised by their exact header), the columns it keeps:
  Bike-Sharing drops `instant`, `dteday` and the counts `casual`, `registered`, `cnt` (which sum
  to the target), SGEMM drops the four timings `Run1 (ms)`..`Run4 (ms)`;
* otherwise every column whose values are all numbers, except the target's.

Every value of a chosen column must be a finite decimal number; columns stay as they are (the
paper's code one-hot encodes nothing).
"""

import csv
import dataclasses
import io
import math
import os
from typing import Optional, Sequence

import numpy as np

from sam_edge import errors

SHOWN_COLUMNS = 20

_BIKE_DAY = ("instant", "dteday", "season", "yr", "mnth", "holiday", "weekday", "workingday",
             "weathersit", "temp", "atemp", "hum", "windspeed", "casual", "registered", "cnt")
_BIKE_HOUR = _BIKE_DAY[:5] + ("hr",) + _BIKE_DAY[5:]
_BIKE_DROPPED = ("instant", "dteday", "casual", "registered", "cnt")
_SGEMM_RUNS = tuple(f"Run{i} (ms)" for i in range(1, 5))
_SGEMM = ("MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN", "STRM",
          "STRN", "SA", "SB") + _SGEMM_RUNS

# name: (the exact header, the feature columns the paper's code keeps)
LAYOUTS = {
    "UCI Bike-Sharing hour.csv": (_BIKE_HOUR, tuple(c for c in _BIKE_HOUR
                                                    if c not in _BIKE_DROPPED)),
    "UCI Bike-Sharing day.csv": (_BIKE_DAY, tuple(c for c in _BIKE_DAY if c not in _BIKE_DROPPED)),
    "UCI SGEMM sgemm_product.csv": (_SGEMM, _SGEMM[:-4]),
}


@dataclasses.dataclass(frozen=True)
class Table:
  """The chosen columns of a CSV file: `features` float64 [rows, F] named `feature_names`, and
  `target` float64 [rows] (the mean of `target_names`); `layout` names a recognised file."""
  features: np.ndarray
  target: np.ndarray
  feature_names: tuple[str, ...]
  target_names: tuple[str, ...]
  layout: Optional[str] = None

  @property
  def rows(self) -> int:
    return len(self.target)


def _shown(names: Sequence[str]) -> str:
  """The column names, comma-separated, the first SHOWN_COLUMNS of them."""
  more = f", ... ({len(names)} columns)" if len(names) > SHOWN_COLUMNS else ""
  return ", ".join(repr(n) for n in names[:SHOWN_COLUMNS]) + more


def _rows(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
  """(the header, [(line number, fields)] of every non-blank row), checked for shape."""
  where = f"--csv_path={path}"
  if not os.path.isfile(path):
    raise errors.InputError(f"{where}: no such file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise errors.InputError(f"{where} cannot be read: {e.strerror}") from e
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise errors.InputError(f"{where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                            f"{e.start})") from e
  reader = csv.reader(io.StringIO(text, newline=""), strict=True)
  rows = []
  try:
    for fields in reader:
      if fields and any(f.strip() for f in fields):
        rows.append((reader.line_num, [f.strip() for f in fields]))
  except csv.Error as e:
    raise errors.InputError(f"{where} is not a CSV file (line {reader.line_num}: {e})") from e
  if not rows:
    raise errors.InputError(f"{where} is empty")
  (_, header), body = rows[0], rows[1:]
  repeated = sorted({n for n in header if header.count(n) > 1})
  if repeated:
    raise errors.InputError(f"{where}: the header names {_shown(repeated)} more than once")
  for line, fields in body:
    if len(fields) != len(header):
      raise errors.InputError(f"{where}: line {line} has {len(fields)} fields, the header "
                              f"{len(header)}")
  if not body:
    raise errors.InputError(f"{where} holds a header but no rows")
  return header, body


def _numbers(path: str, name: str, lines: list[int], texts: Sequence[str]) -> np.ndarray:
  """The column as float64; an InputError names the first value that is not a finite number."""
  try:
    values = np.asarray(texts).astype(np.float64)
  except ValueError:
    values = None
  if values is not None and np.all(np.isfinite(values)):
    return values
  out = []
  for line, text in zip(lines, texts):
    try:
      out.append(float(text))
    except ValueError:
      out.append(math.nan)
    if not math.isfinite(out[-1]):
      raise errors.InputError(f"--csv_path={path}: column {name!r} holds {text!r} at line "
                              f"{line}, not a finite number")
  return np.asarray(out, dtype=np.float64)


def _numeric(texts: Sequence[str]) -> bool:
  """Whether every value of a column is a finite number."""
  try:
    return bool(np.all(np.isfinite(np.asarray(texts).astype(np.float64))))
  except ValueError:
    return False


def read(path: str, target: Sequence[str], features: Optional[Sequence[str]] = None) -> Table:
  """The table of the CSV file `path` with target `target` (column names; their mean) and
  features `features` (None: the default of the module doc)."""
  header, body = _rows(path)
  columns = dict(zip(header, zip(*(fields for _, fields in body))))
  lines = [line for line, _ in body]
  for flag, names in (("--target_column", target), ("--feature_columns", features or ())):
    unknown = [n for n in names if n not in columns]
    if unknown:
      raise errors.InputError(f"{flag}: {path} has no column {_shown(unknown)} (its columns: "
                              f"{_shown(header)})")
  layout = next((name for name, (cols, _) in LAYOUTS.items() if tuple(header) == cols), None)
  if features is not None:
    overlap = [n for n in features if n in target]
    if overlap:
      raise errors.InputError(f"--feature_columns must not hold the target column "
                              f"{_shown(overlap)}")
    chosen = tuple(features)
  elif layout is not None:
    chosen = tuple(n for n in LAYOUTS[layout][1] if n not in target)
  else:
    chosen = tuple(n for n in header if n not in target and _numeric(columns[n]))
  if not chosen:
    raise errors.InputError(f"--csv_path={path}: no numeric column besides the target; name "
                            "the features with --feature_columns")
  x = np.stack([_numbers(path, n, lines, columns[n]) for n in chosen], axis=1)
  y = np.mean([_numbers(path, n, lines, columns[n]) for n in target], axis=0)
  return Table(x, y, chosen, tuple(target), layout)
