"""The file `python -m sam_edge.evaluate --out=FILE.json` writes, and its values as summary.csv
columns (`compare --evaluations=FILE.json`). No jax here.

    {"format": "sam-edge evaluation", "version": 1,
     "runs": [{"run": name, "folder": its run folder, "params": its parameters file (both
               absolute), "task", "step": the steps trained, "split": "train", "examples": N,
               "loss": x, "error": x, "top5": x (null with fewer than 10 classes),
               "lambda1": {"value", "residual", "converged", "hvps", "max_steps", "tol"},
               "trace": {"value", "stderr", "probes", "method"}, "seconds": s}, ...]}

A metric not asked for is absent (`studies.evaluation` gives each as a formula). As summary.csv
columns (`column`), on split s: `{s}_loss_full`, `{s}_error_full`, `{s}_top5_full` (at the final
parameters, over the split's examples the evaluation took); λ1 and tr(H) are `lambda1_post` and
`trace_post` on the training split, `lambda1_post_{s}` and `trace_post_{s}` on another. An entry
joins the summary row of the run whose folder it names (real paths compared: the folder holding
the run's pickle and parameters).
"""

import json
import math
import os
from typing import Any, Iterable, Optional

from sam_edge import errors

FORMAT, VERSION = "sam-edge evaluation", 1
SPLITS = ("train", "test", "validation")
OUTPUTS = ("loss", "error", "top5")               # of the network's outputs
CURVATURE = ("lambda1", "trace")                  # of the loss's Hessian
METRICS = OUTPUTS + CURVATURE
TOP5_CLASSES = 10                                 # top5 only with at least this many classes


def column(split: str, metric: str) -> str:
  """The summary.csv column of `metric` evaluated on `split` (module doc)."""
  if metric in CURVATURE:
    return f"{metric}_post" if split == "train" else f"{metric}_post_{split}"
  return f"{split}_{metric}_full"


COLUMNS = tuple(column(s, m) for s in SPLITS for m in METRICS)


def metric_problems(metrics: Iterable[str]) -> list[str]:
  """One line per unknown metric, and one for none at all."""
  metrics = list(metrics)
  found = [f"--metrics: unknown metric {m!r}; use some of {', '.join(METRICS)}"
           for m in metrics if m not in METRICS]
  return found or ([] if metrics else [f"--metrics: give some of {', '.join(METRICS)}"])


def document(entries: list[dict]) -> dict:
  """The file's contents for `entries` (module doc)."""
  return {"format": FORMAT, "version": VERSION, "runs": entries}


def values(entry: dict) -> dict[str, Optional[float]]:
  """{column: value} of one entry (a value None where it is null)."""
  value = lambda v: v.get("value") if isinstance(v, dict) else v
  return {column(entry["split"], m): value(entry[m]) for m in METRICS if m in entry}


def read(path: str) -> list[dict]:
  """The entries of an evaluation file; InputError (one line) for a file that is missing, not
  JSON or not of this format."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except OSError as e:
    raise errors.InputError(f"--evaluations={path}: {e.strerror or e}") from None
  except ValueError as e:
    raise errors.InputError(f"--evaluations={path}: not JSON ({e})") from None
  if not isinstance(data, dict) or data.get("format") != FORMAT:
    raise errors.InputError(f"--evaluations={path}: not a file of `python -m sam_edge.evaluate "
                            "--out` (no \"format\": \"sam-edge evaluation\")")
  runs = data.get("runs")
  if not isinstance(runs, list) or not all(
      isinstance(e, dict) and isinstance(e.get("folder"), str) and e.get("split") in SPLITS
      for e in runs):
    raise errors.InputError(f"--evaluations={path}: every entry of \"runs\" needs a folder and "
                            "a split")
  return runs


def join(files: dict[str, list[dict]], folders: dict[str, str]) -> tuple[dict, int]:
  """({run name: {column: value}}, entries matching no run) for the entries of `files` ({path:
  entries}) and the runs' folders ({run name: folder}). InputError (one line) when no entry
  matches a run, or when two entries give one run the same column."""
  by_folder = {os.path.realpath(folder): name for name, folder in folders.items()}
  out: dict[str, dict[str, Any]] = {}
  came_from: dict[tuple[str, str], str] = {}
  unmatched = 0
  for path, entries in files.items():
    for entry in entries:
      name = by_folder.get(os.path.realpath(entry["folder"]))
      if name is None:
        unmatched += 1
        continue
      for col, value in values(entry).items():
        if (name, col) in came_from:
          raise errors.InputError(f"--evaluations: {name} has {col} in both "
                                  f"{came_from[name, col]} and {path}")
        came_from[name, col] = path
        out.setdefault(name, {})[col] = value
  if not out and any(files.values()):
    raise errors.InputError(f"--evaluations: none of the runs evaluated in "
                            f"{', '.join(files)} is among the runs compared (runs are matched "
                            "by their folders)")
  return out, unmatched


def _fmt(x: Any, digits: int = 4) -> str:
  if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
    return f"{x:.{digits}g}"
  return "–"


def table(entries: list[dict]) -> str:
  """The entries as a small text table: run, split, examples and each metric present."""
  shown = [m for m in METRICS if any(m in e for e in entries)]
  header = ["run", "split", "examples", *shown]
  rows = []
  for e in entries:
    cells = [e["run"], e["split"], str(e["examples"])]
    for m in shown:
      v = e.get(m)
      if m == "lambda1" and isinstance(v, dict):
        mark = "" if v.get("converged") else " (not converged)"
        cells.append(f"{_fmt(v['value'], 6)} (res {_fmt(v['residual'], 2)}){mark}")
      elif m == "trace" and isinstance(v, dict):
        cells.append(f"{_fmt(v['value'], 6)} ± {_fmt(v['stderr'], 2)}")
      else:
        cells.append(_fmt(v))
    rows.append(cells)
  return "\n".join(aligned([header, *rows]))


def aligned(rows: list[list[str]]) -> list[str]:
  """The rows of cells as text lines, each column padded to its widest cell, two spaces apart."""
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
