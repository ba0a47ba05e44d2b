"""Rows of results as NumPy columns: the records or evaluations of a run (a list of dicts) or its
losses (a dict of per-step lists) as one read-only array per key, one entry per row (`Columns`).

A key's values become an array of their dtype when every row holds a number or a rectangular
(nested) list of numbers; float64 with NaN in the gaps for numbers, or lists of numbers (2-D:
rows x the longest list), missing or ragged in some rows; else a 1-D object array, None in the
gaps (docs/results.md). `Columns.to_pandas` needs pandas, which sam-edge does not depend on: it is
imported there, never here at the top.
"""

import contextlib
import dataclasses
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

MISSING = object()                                  # a row that lacks the key


def import_pandas() -> Any:
  """The pandas module, or an ImportError saying how to get it."""
  try:
    import pandas  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("to_pandas() needs pandas, which sam-edge does not install: "
                      "pip install pandas") from e
  return pandas


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float))               # bools included


def _is_numbers(v: Any) -> bool:
  return isinstance(v, (list, tuple)) and all(_is_number(x) for x in v)


def column(values: Sequence[Any]) -> np.ndarray:
  """One key's values (`MISSING` where a row lacks the key) as a read-only array (module doc)."""
  present = [v for v in values if v is not MISSING and v is not None]
  out: Optional[np.ndarray] = None
  if present and len(present) == len(values):
    with contextlib.suppress(ValueError, TypeError):  # ragged lists
      out = np.asarray(values)
    if out is not None and out.dtype.kind not in "biuf":
      out = None
  if out is None and present and all(_is_number(v) for v in present):
    out = np.array([float(v) if _is_number(v) else np.nan for v in values], np.float64)
  if out is None and present and all(_is_numbers(v) for v in present):
    out = np.full((len(values), max(len(v) for v in present)), np.nan)
    for i, v in enumerate(values):
      if _is_numbers(v):
        out[i, :len(v)] = v
  if out is None:
    out = np.empty(len(values), object)
    for i, v in enumerate(values):
      out[i] = None if v is MISSING else v
  out.flags.writeable = False
  return out


@dataclasses.dataclass(frozen=True, eq=False)
class Columns(Mapping[str, np.ndarray]):
  """Rows of results by key, in the order the keys first appear (module doc)."""
  arrays: Mapping[str, np.ndarray]
  rows: int                                          # the number of rows

  @classmethod
  def of_rows(cls, rows: Sequence[Any]) -> "Columns":
    """The columns of a list of dicts (records, evaluations)."""
    rows = [r for r in rows if isinstance(r, dict)]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return cls({k: column([r.get(k, MISSING) for r in rows]) for k in keys}, len(rows))

  @classmethod
  def of_lists(cls, lists: Any) -> "Columns":
    """The columns of a dict of per-row lists (losses: {"step": [...], "loss": [...], ...}); a
    value that is not a list is kept as a 0-d array."""
    lists = lists if isinstance(lists, dict) else {}
    arrays = {k: column(v) if isinstance(v, (list, tuple)) else column([v]).reshape(())
              for k, v in lists.items()}
    rows = max((len(v) for v in lists.values() if isinstance(v, (list, tuple))), default=0)
    return cls(arrays, rows)

  def __getitem__(self, key: str) -> np.ndarray:
    try:
      return self.arrays[key]
    except KeyError:
      raise KeyError(f"{key!r}: no such column; the columns are {list(self.arrays)}") from None

  def __iter__(self) -> Iterator[str]:
    return iter(self.arrays)

  def __len__(self) -> int:
    return len(self.arrays)

  def __eq__(self, other: object) -> bool:
    """The same keys in the same order, holding equal arrays (NaN equal to NaN)."""
    if not isinstance(other, Columns):
      return NotImplemented
    same = lambda a, b: (a.shape == b.shape and a.dtype == b.dtype
                         and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    return (self.rows == other.rows and list(self.arrays) == list(other.arrays)
            and all(same(v, other.arrays[k]) for k, v in self.arrays.items()))

  def __repr__(self) -> str:
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in self.arrays.items())
    return f"Columns({self.rows} rows: {shapes})"

  def to_pandas(self) -> Any:
    """A pandas DataFrame, one row per row: a 2-D column `k` becomes `k[0]`, `k[1]`, ...; a
    column of more dimensions is one cell per row (an array); a 0-d one is repeated."""
    data: dict[str, Any] = {}
    for key, values in self.arrays.items():
      if values.ndim == 2:
        data.update({f"{key}[{j}]": values[:, j] for j in range(values.shape[1])})
      elif values.ndim > 2:
        data[key] = list(values)
      else:
        data[key] = values.item() if values.ndim == 0 else values
    pandas = import_pandas()
    if data and all(np.ndim(v) == 0 for v in data.values()):
      return pandas.DataFrame([data])
    return pandas.DataFrame(data)
