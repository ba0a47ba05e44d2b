"""A whole sweep: expand the grid, check everything before starting, run this shard's runs one
after another, then write the summary of whatever runs the folder holds.

Checked first, for all shards so that every machine fails alike (one line each, exit code 2):
the grid, the flags the sweep owns, every run's flags as its entry point checks them, the
report's options, `--out`, and this shard's existing run folders (same command:
`commands.comparable`). Exit code: 0 when every run of the shard finished (diverged included), 1
when some failed, 128 + the signal when SIGINT/SIGTERM stopped it (the same command resumes).
"""

import dataclasses
import functools
import json
import os
import shlex
import signal
from types import ModuleType
from typing import Callable, Optional

from sam_edge import records
from sam_edge.run import run_folder
from sam_edge.studies import commands, grid, report, runner, sources

PROG = "sweep"
OUTCOME_LINES = {"skipped": "finished already ({}); skipped", "done": "done ({})",
                 "failed": "failed ({})"}                  # filled with Outcome.detail


@dataclasses.dataclass(frozen=True)
class Settings:
  """A sweep as given on the command line."""
  out: str
  entry: str
  args: tuple[str, ...]
  aggregate: str = "product"
  shard: Optional[str] = None
  dry_run: bool = False
  options: report.Options = report.Options()


class SweepError(ValueError):
  """Problems found before any run starts (one line each in `lines`)."""

  def __init__(self, lines: list[str]):
    super().__init__("; ".join(lines))
    self.lines = lines


def folder_problems(out: str, runs: list[grid.RunSpec], argvs: dict[str, list[str]],
                    fv) -> list[str]:
  """One line per existing run folder that another command made (or that is not a run folder)."""
  found = []
  for spec in runs:
    folder = os.path.join(out, spec.name)
    if not os.path.isdir(folder):
      continue
    old = run_folder.read_command(folder)
    if old is None:
      if os.listdir(folder):
        found.append(f"{folder} exists but holds no {commands.COMMAND_FILE}: not a run folder "
                     "of a sweep; move it away")
    elif commands.comparable(old, fv) != commands.comparable(argvs[spec.name], fv):
      found.append(f"{folder} holds a run of another command "
                   f"({shlex.join(commands.comparable(old, fv))}); use another --out or remove "
                   "that folder")
  return found


def prepare(s: Settings) -> tuple[ModuleType, list[grid.Axis], list[grid.RunSpec],
                                  list[grid.RunSpec], dict[str, list[str]]]:
  """(entry module, axes, every run, this shard's runs, {name: argv}); raises SweepError."""
  try:
    axes, runs = grid.expand(list(s.args), s.aggregate)
    index, count = grid.parse_shard(s.shard) if s.shard else (0, 1)
    module = commands.load_entry(s.entry)
  except grid.GridError as e:
    raise SweepError([str(e)]) from e
  fv = module.FLAGS
  problems = commands.owned_problems(list(s.args), fv)
  problems += report.check_options(s.options, [a.flag for a in axes])
  reason = records.folder_problem(s.out)        # `out` may not exist yet: it is created
  problems += [f"--out={s.out}: {reason}"] if reason else []
  if problems:
    raise SweepError(problems)
  problems = commands.validate(module, runs)
  if problems:
    raise SweepError(problems)
  argvs = {r.name: commands.command(s.entry, commands.run_args(r, os.path.join(s.out, r.name), fv))
           for r in runs}
  mine = grid.shard(runs, index, count)
  problems = folder_problems(s.out, mine, argvs, fv)
  if problems:
    raise SweepError(problems)
  return module, axes, runs, mine, argvs


def write_plan(s: Settings, axes: list[grid.Axis], runs: list[grid.RunSpec]) -> None:
  """sweep.json: the entry point, aggregation, axes and run names, for `compare` to read."""
  plan = {"entry": s.entry, "aggregate": s.aggregate,
          "axes": [[a.flag, list(a.values)] for a in axes], "runs": [r.name for r in runs]}
  records.atomic_write_bytes(os.path.join(s.out, sources.SWEEP_FILE),
                             json.dumps(plan, indent=1).encode())


def run(s: Settings, log: Callable[[str], None] = functools.partial(print, flush=True)) -> int:
  """Runs the sweep; returns its exit code (module doc). Raises SweepError. `log` flushes each
  line, so that the lines stay in order with the runs' also when piped to a file."""
  module, axes, runs, mine, argvs = prepare(s)
  if s.dry_run:
    for spec in mine:
      log(shlex.join(argvs[spec.name]))
    return 0
  os.makedirs(s.out, exist_ok=True)
  write_plan(s, axes, runs)
  files = commands.output_files(module.FLAGS)
  raw_name, params_name = files.get("raw_data_output"), files.get(records.PARAMS.name)
  say = lambda line: log(f"{PROG}: {line}")
  env = dict(os.environ)                  # the runs': the entry point's folder first on PYTHONPATH
  root = os.path.dirname(os.path.abspath(module.__file__))
  env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
  outcomes = []
  with runner.Runner(log=say) as r:
    for k, spec in enumerate(mine, 1):
      folder, label = os.path.join(s.out, spec.name), f"[{k}/{len(mine)}] {spec.name}"
      raw_file = os.path.join(folder, raw_name) if raw_name else None
      outcome = r.run(spec.name, folder, argvs[spec.name], raw_file, env, label=label,
                      params_path=os.path.join(folder, params_name) if params_name else None)
      outcomes.append(outcome)
      if outcome.status in OUTCOME_LINES:
        say(f"{label}: " + OUTCOME_LINES[outcome.status].format(outcome.detail))
      if r.stopped_by:
        break
  _summarise(s, say)
  failed = [o.name for o in outcomes if o.status == "failed"]
  if r.stopped_by:
    say(f"stopped by {signal.Signals(r.stopped_by).name}; run the same command again to resume")
    return 128 + r.stopped_by
  if failed:
    say(f"{len(failed)} of {len(mine)} runs failed: {', '.join(failed)}")
    return 1
  return 0


def _summarise(s: Settings, say: Callable[[str], None]) -> None:
  """The summary of the sweep folder; a failure here is a warning, not the sweep's result. `say`
  logs a line after the sweep's name."""
  try:
    found, sweep_axes = sources.read_sweep(s.out)
    report.write(report.sound_runs(found, log=say), sweep_axes, s.out, s.options, log=say)
  except Exception as e:  # pylint: disable=broad-except
    say(f"warning: could not write the summary: {type(e).__name__}: {e}")
