"""Results read back in Python: `load(PATH)` for a raw pickle, a run folder or a sweep folder.

    from sam_edge import results
    run = results.load("runs/tiny")              # a run folder, or its raw.pkl
    run.records["eigenvalues"][:, 0]             # λ1 of every measurement
    sweep = results.load("studies/rho")          # a folder holding sweep.json
    [(r.values["rho"], r.final.get("test_error")) for r in sweep.runs]

A `Run` holds the pickle's `config`, `final`, `environment` as dicts and its `records`,
`evaluations` and `losses` as `studies.columns.Columns`: one read-only NumPy array per key, one
entry per row (measurement, evaluation, training step); a key missing in some rows is NaN there
(numbers) or None (anything else). `to_pandas()` on `Columns`, `Run` and `Sweep` needs pandas,
which sam-edge does not depend on; it is imported only there.

Checks on load (`check=True`, the default), those of `python -m sam_edge.verify` less the
checkpoints (which need jax and orbax and restore every step):

  * the pickle: a finished run's records and losses against `final.records_sha256`
    (`records.raw_status`; an unfinished run and a pickle written before checksums existed pass);
  * in a run folder, also its parameters file (`params.npz`, its arrays and meta against their
    checksums) and its `done.json` (the pickle file against the `pickle_sha256` it recorded).

A check that fails raises `ChecksumError`, one line naming the file and what is wrong;
`load(PATH, check=False)` reads the results anyway, with `Run.sound` False and the failed line in
`Run.checks`. A path that cannot be read at all (missing, not a pickle of a run, a damaged
pickle) raises `ResultsError` whatever `check` says.
"""

import dataclasses
import json
import os
from typing import Any, Iterator, Optional, Sequence, Union

from sam_edge import records
from sam_edge.run import run_folder
from sam_edge.studies import commands, grid, sources, verify
from sam_edge.studies.columns import Columns, import_pandas

WHAT = ("records", "evaluations", "losses")       # a Run's Columns, for `to_pandas(what)`
FINISHED, UNFINISHED, PENDING = "finished", "unfinished", "pending"


class ResultsError(ValueError):
  """A path that cannot be read as results (one line naming it and why)."""


class ChecksumError(ResultsError):
  """Results whose files do not match their checksums (one line naming the file and what is
  wrong); `load(PATH, check=False)` reads them anyway."""


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One run's results: its pickle's dicts and columns, and what was checked."""
  name: str                  # the run folder's name (the file's name for a bare pickle)
  path: str                  # the pickle read; the run folder for a pending run
  status: str                # FINISHED (`final` is set), UNFINISHED (`final` is {}), PENDING
  config: dict[str, Any]     # the run's flags, parsed ({} while pending)
  records: Columns           # one row per measurement
  evaluations: Columns       # one row per evaluation (`--eval_every_steps`)
  losses: Columns            # one row per training step: step, loss[, per-step tracking]
  final: dict[str, Any]      # how the run ended ({} until it ends)
  environment: dict[str, Any]  # how the run was made: versions, devices, git, start time
  values: dict[str, str]     # a sweep run's axis values as typed in its command; {} otherwise
  checks: tuple[str, ...]    # what was checked, one line each (as `sam_edge.verify` prints it)
  sound: bool                # every check passed (False only under `check=False`)

  def __repr__(self) -> str:
    return (f"Run({self.name!r}, {self.status}: {self.records.rows} measurements, "
            f"{self.evaluations.rows} evaluations, {self.losses.rows} steps)")

  def to_pandas(self, what: str = "records") -> Any:
    """The run's `records` (or "evaluations", "losses") as a pandas DataFrame."""
    if what not in WHAT:
      raise ValueError(f"to_pandas: what must be one of {', '.join(WHAT)}, got {what!r}")
    return getattr(self, what).to_pandas()


def _literal(text: Optional[str]) -> Any:
  """A value typed on a command line, as an int or float where it reads as one."""
  for kind in (int, float):
    try:
      return kind(text)
    except (TypeError, ValueError):
      pass
  return text


@dataclasses.dataclass(frozen=True, eq=False)
class Sweep:
  """A sweep folder's results: its plan (sweep.json) and its runs."""
  path: str
  entry: str                          # the entry point: "image_classification" or "transformer"
  aggregate: str                      # "product" or "zip"
  axes: dict[str, tuple[str, ...]]    # swept flag -> its values as typed, in sweep.json's order
  runs: tuple[Run, ...]               # sweep.json's order, then run folders it does not list

  def __getitem__(self, name: str) -> Run:
    """The run named `name` (its folder's name, e.g. "rho=0.05,seed=1")."""
    for run in self.runs:
      if run.name == name:
        return run
    raise KeyError(f"{name!r}: no such run in {self.path}")

  def __iter__(self) -> Iterator[Run]:
    return iter(self.runs)

  def __len__(self) -> int:
    return len(self.runs)

  def __repr__(self) -> str:
    counts = {s: sum(r.status == s for r in self.runs) for s in (FINISHED, UNFINISHED, PENDING)}
    return (f"Sweep({self.path!r}: {len(self.runs)} runs over {', '.join(self.axes)}; "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ")")

  def value(self, run: Run, axis: str) -> Any:
    """`run`'s value of the swept flag `axis`: parsed, from its config; for a pending run, as
    typed (an int or float where it reads as one)."""
    return run.config[axis] if axis in run.config else _literal(run.values.get(axis))

  def to_pandas(self, what: str = "runs") -> Any:
    """"runs": one row per run with `run`, `status`, its axis values (`value`) and the entries
    of `final` that are numbers, strings or None; "records", "evaluations" or "losses": every
    run's rows of those columns (`Run.to_pandas`), after columns `run` and the axes."""
    pandas = import_pandas()
    if what == "runs":
      return pandas.DataFrame([
          {"run": r.name, "status": r.status, **{a: self.value(r, a) for a in self.axes},
           **{k: v for k, v in r.final.items()
              if v is None or isinstance(v, (bool, int, float, str))}}
          for r in self.runs], columns=None if self.runs else ["run", "status", *self.axes])
    frames = []
    for r in (r for r in self.runs if r.status != PENDING):
      frame = r.to_pandas(what)
      for i, (key, value) in enumerate({"run": r.name, **{a: self.value(r, a)
                                                          for a in self.axes}}.items()):
        frame.insert(i, key, [value] * len(frame))
      frames.append(frame)
    if not frames:
      return pandas.DataFrame(columns=["run", *self.axes])
    return pandas.concat(frames, ignore_index=True)


def _read(path: str) -> dict:
  """The raw dict of the pickle `path`; ResultsError when it cannot be one."""
  try:
    raw = records.read_raw(path)
  except OSError as e:
    raise ResultsError(f"{path}: cannot be read ({e.strerror or e})") from None
  except Exception as e:  # pylint: disable=broad-except  # a damaged pickle raises any kind
    reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
    raise ResultsError(f"{path}: cannot be read as a pickle ({reason})") from None
  if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
    raise ResultsError(f"{path}: not a raw pickle of a run (no list of 'records')")
  return raw


def _checked(items: list[verify.Item], check: bool) -> None:
  """Raises ChecksumError for the first unsound item when `check` is set."""
  bad = next((item for item in items if not item.sound), None)
  if check and bad:
    raise ChecksumError(f"{bad.path}: {bad.detail} (load(..., check=False) reads it anyway)")


def _run(path: str, name: str, check: bool, values: Optional[dict[str, str]] = None,
         more: Sequence[verify.Item] = ()) -> Run:
  """The Run of the pickle `path`, checked with the items `more` of its folder."""
  raw = _read(path)
  items = [verify.Item(path, *records.raw_status(raw)), *more]
  _checked(items, check)
  final = raw.get("final") if isinstance(raw.get("final"), dict) else {}
  return Run(name=name, path=path, status=FINISHED if final else UNFINISHED,
             config=dict(raw.get("config") or {}),
             records=Columns.of_rows(raw["records"]),
             evaluations=Columns.of_rows(raw.get("evaluations") or []),
             losses=Columns.of_lists(raw.get("losses")), final=dict(final),
             environment=dict(raw.get("environment") or {}), values=dict(values or {}),
             checks=tuple(item.line() for item in items),
             sound=all(item.sound for item in items))


def _pending(folder: str, name: str, values: dict[str, str],
             items: Sequence[verify.Item] = ()) -> Run:
  """A run without a pickle (yet, or any more: `items` says so)."""
  empty = Columns({}, 0)
  return Run(name=name, path=folder, status=PENDING, config={}, records=empty,
             evaluations=empty, losses=empty, final={}, environment={}, values=dict(values),
             checks=tuple(item.line() for item in items),
             sound=all(item.sound for item in items))


def _run_folder(folder: str, name: str, check: bool, axes: Sequence[str] = (),
                values: Optional[dict[str, str]] = None) -> Run:
  """A run folder: its pickle (with its parameters file and done.json), or a pending Run when
  its command.txt is there and its pickle not yet. Its `values` are the given ones, else its
  command's values of `axes`."""
  argv = run_folder.read_command(folder)
  typed = run_folder.command_values(argv) if argv else {}
  values = values if values is not None else {a: typed[a] for a in axes if a in typed}
  raw_file = sources.pickle_in(folder, typed)
  if raw_file is None:
    if argv is None:
      raise ResultsError(f"{folder}: holds no raw pickle, {commands.COMMAND_FILE} or "
                         f"{sources.SWEEP_FILE}")
    items = verify.done_items(folder, typed, None)        # finished, pickle gone?
    _checked(items, check)
    return _pending(folder, name, values, items)
  params = run_folder.params_in(folder, typed)
  more = [verify.params_item(params)] if params else []
  return _run(raw_file, name, check, values, more + verify.done_items(folder, typed, raw_file))


def _sweep(folder: str, check: bool) -> Sweep:
  """A sweep folder: sweep.json's runs in its order (pending where they have no pickle yet),
  then the run folders it does not list."""
  try:
    with open(os.path.join(folder, sources.SWEEP_FILE), encoding="utf-8") as f:
      plan = json.load(f)
    axes = [grid.Axis(flag, tuple(map(str, values))) for flag, values in plan["axes"]]
    aggregate, planned = plan.get("aggregate", "product"), list(plan["runs"])
    combos = grid.combinations(axes, aggregate)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ResultsError(f"{folder}: its {sources.SWEEP_FILE} cannot be read "
                       f"({type(e).__name__}: {e})") from None
  names = [a.flag for a in axes]
  by_plan = {n: dict(zip(names, c)) for n, c in zip(planned, combos)} if (
      len(combos) == len(planned)) else {}
  present, _ = sources.sweep_plan(folder)
  runs = []
  for name in planned + [n for n in present if n not in planned]:
    path = os.path.join(folder, name)
    if name in present:
      runs.append(_run_folder(path, name, check, names, by_plan.get(name)))
    else:
      runs.append(_pending(path, name, by_plan.get(name, {})))
  return Sweep(path=folder, entry=str(plan.get("entry", "")), aggregate=aggregate,
               axes={a.flag: a.values for a in axes}, runs=tuple(runs))


def _file_name(path: str) -> str:
  """A bare pickle's run name: its folder's name for raw.pkl, else the file's name less .pkl."""
  stem = os.path.splitext(os.path.basename(path))[0]
  folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
  return folder if stem == "raw" and folder else stem


def load(path: Union[str, "os.PathLike[str]"], *, check: bool = True) -> Union[Run, Sweep]:
  """The results at `path`: a `Sweep` for a folder holding sweep.json, a `Run` for a run folder
  or a raw pickle (any file). With `check`, files that fail their checksums raise ChecksumError
  (module doc); ResultsError for a path that cannot be read as results."""
  path = os.fspath(path)
  if os.path.isdir(path):
    if os.path.isfile(os.path.join(path, sources.SWEEP_FILE)):
      return _sweep(path, check)
    return _run_folder(path, os.path.basename(os.path.normpath(path)), check)
  if os.path.isfile(path):
    return _run(path, _file_name(path), check)
  raise ResultsError(f"{path}: no such file or folder")
