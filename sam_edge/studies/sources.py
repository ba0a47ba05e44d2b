"""Reading runs: run folders, raw pickles, the reference's raw.txt files, and sweep folders.

Every source becomes a `Run`: a name, its flags, its measurement records (dicts with the pickle's
record keys) and losses, and its final dict ({} while unfinished). A half-finished run reads
like a finished one with `final == {}`; a sweep run folder without data yet is `pending`. A
pickle is checked as it is read (`records.raw_status`): `sound` says whether its records and
losses match `final.records_sha256`, and `check` says so in one line.

A reference `raw.txt` has one line per measurement with 8 columns: training time (s), λ1, 2/η,
SAM-edge, ‖g‖, training loss, g_alignment, sg_alignment. It has no steps (records get
`step: None`), no flags and no final result. Its step size and ρ are inferred from the columns:
η = 2 / (2/η), and, inverting SAM-edge e = (4/η) / (sqrt(1 + 8ρ/(η‖g‖)) + 1),

    ρ = (η‖g‖ / 8) · ((4 / (η e) − 1)² − 1),

the median over the lines, to 3 significant digits (ρ = 0 where e = 2/η).
"""

import dataclasses
import json
import math
import os
import statistics
from typing import Any, Optional

from sam_edge import records
from sam_edge.run import run_folder
from sam_edge.studies import commands

SWEEP_FILE = "sweep.json"
REFERENCE_COLUMNS = ("time", "lambda1", "two_over_eta", "sam_edge", "grad_norm", "loss",
                     "g_alignment", "sg_alignment")


class SourceError(ValueError):
  """A path that cannot be read as a run (one line naming it)."""


@dataclasses.dataclass
class Run:
  """One run as read from disk."""
  name: str
  source: str                       # the file (or, for pending runs, the folder) read
  kind: str                         # "pickle", "reference" or "pending"
  config: dict[str, Any]            # its flags (inferred for a reference file)
  values: dict[str, str] = dataclasses.field(default_factory=dict)  # flags as typed (sweeps)
  records: list[dict] = dataclasses.field(default_factory=list)
  losses: tuple[list, list] = ([], [])
  final: dict = dataclasses.field(default_factory=dict)
  sound: bool = True                # False: a pickle that does not match its checksum
  check: str = ""                   # the pickle's check, one line (records.raw_status)

  @property
  def folder(self) -> str:
    """Its folder (a pickle's folder): where it keeps its parameters."""
    return self.source if os.path.isdir(self.source) else os.path.dirname(self.source) or "."


def _float(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    return math.nan


def infer_reference_config(records: list[dict]) -> dict[str, float]:
  """{step_size, rho} of a reference run from its 2/η, SAM-edge and ‖g‖ columns (see above)."""
  etas, rhos = [], []
  for r in records:
    two_over_eta, edge, g = r["two_over_eta"], r["sam_edge"], r["grad_norm"]
    if not all(math.isfinite(v) and v > 0 for v in (two_over_eta, edge, g)):
      continue
    eta = 2.0 / two_over_eta
    etas.append(eta)
    rhos.append(max(0.0, eta * g / 8.0 * ((4.0 / (eta * edge) - 1.0) ** 2 - 1.0)))
  if not etas:
    return {}
  return {"step_size": float(f"{statistics.median(etas):.6g}"),      # 6 significant digits
          "rho": float(f"{statistics.median(rhos):.3g}")}


def read_reference(path: str, name: str) -> Run:
  """A reference raw.txt file as a Run (see the module docstring)."""
  recs = []
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      cols = line.split()
      if not cols:
        continue
      if len(cols) != len(REFERENCE_COLUMNS):
        raise SourceError(f"{path}: line {number} has {len(cols)} columns, expected 8 "
                          "(the reference's raw.txt format)")
      row = dict(zip(REFERENCE_COLUMNS, map(_float, cols)))
      lambda1 = row.pop("lambda1")
      recs.append({"step": None, "index": len(recs), **row, "eigenvalues": [lambda1],
                   "edge": row["sam_edge"], "edge_label": "SAM edge (reference)"})
  return Run(name, path, "reference", infer_reference_config(recs), records=recs)


def read_pickle(path: str, name: str) -> Run:
  """A raw pickle of ours as a Run; one that cannot be unpickled (a damaged file) is an unsound
  Run without data, and a readable one that is not a run's dict a SourceError."""
  try:
    raw = records.read_raw(path)
  except OSError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # a damaged pickle raises any kind
    reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
    return Run(name, path, "pickle", {}, sound=False,
               check=f"cannot be read as a pickle ({reason})")
  if not isinstance(raw, dict) or "records" not in raw:
    raise SourceError(f"{path}: not a raw pickle of a run (no 'records')")
  sound, check = records.raw_status(raw)
  losses = raw.get("losses") or {}
  return Run(name, path, "pickle", dict(raw.get("config") or {}),
             records=list(raw.get("records") or []),
             losses=(list(losses.get("step") or []), list(losses.get("loss") or [])),
             final=dict(raw.get("final") or {}), sound=sound, check=check)


def pickle_in(folder: str, values: dict[str, str]) -> Optional[str]:
  """The raw pickle of a run folder (`--raw_data_output`, else raw.pkl, else its only *.pkl)."""
  return run_folder.output_in(folder, values, "raw_data_output", "raw.pkl")


def read_run_folder(folder: str, name: Optional[str] = None) -> Run:
  """A run folder (of a sweep, or any folder holding one pickle or one raw.txt) as a Run."""
  name = name or os.path.basename(os.path.normpath(folder))
  argv = run_folder.read_command(folder)
  values = run_folder.command_values(argv) if argv else {}
  path = pickle_in(folder, values)
  if path:
    run = read_pickle(path, name)
  elif os.path.isfile(os.path.join(folder, "raw.txt")):
    run = read_reference(os.path.join(folder, "raw.txt"), name)
  elif argv is not None:
    run = Run(name, folder, "pending", {})
  else:
    raise SourceError(f"{folder}: holds no raw pickle, raw.txt, {commands.COMMAND_FILE} or "
                      f"{SWEEP_FILE}")
  run.values = values
  return run


def sweep_plan(folder: str) -> tuple[list[str], list[str]]:
  """The run folders of a sweep folder (names; its sweep.json order first) and its axes."""
  with open(os.path.join(folder, SWEEP_FILE), encoding="utf-8") as f:
    plan = json.load(f)
  axes = [axis[0] for axis in plan.get("axes", [])]
  present = {e.name for e in os.scandir(folder)
             if e.is_dir() and os.path.isfile(os.path.join(e.path, commands.COMMAND_FILE))}
  order = [n for n in plan.get("runs", []) if n in present]
  return order + sorted(present - set(order)), axes


def read_sweep(folder: str) -> tuple[list[Run], list[str]]:
  """The runs of a sweep folder (its sweep.json order first) and its axes."""
  names, axes = sweep_plan(folder)
  return [read_run_folder(os.path.join(folder, n), n) for n in names], axes


def _default_name(path: str) -> str:
  stem = os.path.splitext(os.path.basename(path))[0]
  parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
  return parent if stem in ("raw", "raw_data") and parent else stem


def read_paths(paths: list[str]) -> tuple[list[Run], list[str]]:
  """Every run under `paths` (names made unique) and the axes of the sweep folders among them."""
  runs: list[Run] = []
  axes: list[str] = []
  for path in paths:
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, SWEEP_FILE)):
      found, sweep_axes = read_sweep(path)
      runs += found
      axes += [a for a in sweep_axes if a not in axes]
    elif os.path.isdir(path):
      runs.append(read_run_folder(path))
    elif not os.path.isfile(path):
      raise SourceError(f"{path}: no such file or folder")
    elif path.endswith(".pkl"):
      runs.append(read_pickle(path, _default_name(path)))
    else:
      runs.append(read_reference(path, _default_name(path)))
  seen: dict[str, int] = {}
  for run in runs:
    seen[run.name] = seen.get(run.name, 0) + 1
    if seen[run.name] > 1:
      run.name = f"{run.name}#{seen[run.name]}"
  return runs, axes
