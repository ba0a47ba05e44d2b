"""Plumbing parity with an old commit: the same fixed-seed runs on an old checkout and on this one
give equal records, and the old commit's checkpoints and sweep folders resume here.

Two checkouts of the project: --old (e.g. 2250650, made with `git worktree add /tmp/old_2250650
2250650`) and --new (default: the repository this script lives in). Every command runs in a
subprocess whose working directory and PYTHONPATH are its side's checkout (so that it imports its
own `sam_edge`), with this script's interpreter (one virtualenv serves both); the runs of 1 go
through one such process per side (CHILD: the entry point's own parse and main for each, as the
tests call it), or one process each with --one_process_per_run. MNIST
comes from --mnist_dir (its four IDX .gz files), prepared by each side into its own TFDS folder
under --work as a user prepares it (`--manual_dir`).

1. Records. One run per method of STEPS steps on each side (COMMON: an MLP of width 32 and
   depth 3, batches of 100 from a 500-example training set, 200 test examples, seed 0, λ1 and λ2
   by Lanczos and the test metrics every MEASURE_EVERY steps, the raw pickle written, no PDFs).
   Methods: plain SGD (ρ = 0), SAM (normalized, ρ = RHO) and every other `--sam` variant of the
   old side (read from its flags; variants only the new side has are listed as skipped), heavy
   ball (`--optimizer=momentum`), Nesterov and Adam (ρ = 0). Compared: the measurement records,
   the evaluations, the per-step losses and `final`, key by key over the keys both sides write,
   the host-clock keys aside (CLOCK_KEYS, FINAL_CLOCK_KEYS); numbers to a relative RTOL (an
   absolute ATOL near 0; NaN equals NaN), anything else exactly. Keys only the new side writes
   are listed; a key only the old side writes counts as a difference. The configs' shared flags
   (paths aside) are compared too and their differences printed, not counted.
2. Checkpoint. For each of --checkpoint_methods the old side runs HALF steps with
   --checkpoint_dir; the new side resumes that checkpoint (`--resume --max_steps=STEPS`) and its
   pickle is compared as in 1 with the old side's uninterrupted run (and a note printed when the
   resumed pickle's `losses` lists are not equally long).
3. Sweep folder. The old side writes a sweep (`python -m sam_edge.sweep`, two runs: ρ = 0 and
   RHO, otherwise as in 1); the new side runs the same sweep command on that folder (expected:
   both runs "finished already", their pickles untouched), then `python -m sam_edge.compare` on
   it, whose summary.csv is compared with the one the old sweep wrote.

Prints one row per method and per resumed checkpoint, and the sweep's outcome; with --json PATH
writes the figures. Exit code 1 when anything compared differs or a command fails.

    python benchmarks/plumbing_parity.py --old /tmp/old_2250650 --mnist_dir DIR [--new PATH]
        [--work DIR] [--methods sgd,sam,...] [--checkpoint_methods sam,adam]
        [--one_process_per_run] [--no_sweep] [--json PATH]
"""

import argparse
import csv
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, HALF, MEASURE_EVERY, RHO = 20, 10, 5, 0.05
RTOL, ATOL = 1e-6, 1e-9
COMMON = ["--dataset=mnist", "--nn_architecture=MLP", "--mlp_width=32", "--mlp_depth=3",
          "--batch_size=100", "--mini_training_set_num_batches=5", "--mini_test_set_num_batches=2",
          "--seed=0", "--step_size=0.1", f"--measure_every_steps={MEASURE_EVERY}",
          f"--eval_every_steps={MEASURE_EVERY}", "--num_principal_components=2"]
NO_PDFS = ["--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
           "--loss_curve_output=", "--eval_curve_output=", "--tracking_curve_output=",
           "--curvature_output=", "--density_output="]
BASE_METHODS = {"sgd": ["--rho=0", "--optimizer=sgd"],
                "sam": [f"--rho={RHO}", "--sam=normalized"]}
OPTIMIZERS = {"heavy_ball": ["--rho=0", "--optimizer=momentum"],
              "nesterov": ["--rho=0", "--optimizer=nesterov"],
              "adam": ["--rho=0", "--optimizer=adam", "--step_size=0.001"]}
CLOCK_KEYS = ("seconds", "time")                                  # a record's / evaluation's
FINAL_CLOCK_KEYS = ("train_time", "elapsed", "records_sha256")   # final's (the sha covers `time`)
COMPARED = ("records", "evaluations", "losses", "final")
SUMMARY_NUMBERS = ("steps", "test_error", "test_loss", "final_lambda1",
                   "median_lambda1_over_edge")
RUN_TIMEOUT_S = 1800
CHILD = """
import json, sys
import image_classification as ic
from sam_edge.cli import main as cli
from sam_edge.tasks.image_task import TASK
codes = {}
for name, argv in json.load(open(sys.argv[1])).items():
  print(f'=== {name}: image_classification', *argv, flush=True)
  try:
    codes[name] = cli.entry(TASK, ic.FLAGS, argv)
  except SystemExit as e:
    codes[name] = e.code if isinstance(e.code, int) else 1
  print(f'=== {name}: exit {codes[name]}', flush=True)
json.dump(codes, open(sys.argv[2], 'w'))
"""


def side_run(side: str, argv: list[str], log: str) -> subprocess.CompletedProcess:
  """`python ARGV` with cwd and PYTHONPATH the checkout `side`; stdout and stderr also to `log`."""
  env = dict(os.environ, PYTHONPATH=side)
  proc = subprocess.run([sys.executable, *argv], cwd=side, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_S, check=False)
  with open(log, "w", encoding="utf-8") as out:
    out.write(proc.stdout)
  return proc


def sam_choices(side: str) -> list[str]:
  """The `--sam` values of the checkout `side`."""
  code = ("import json, image_classification as ic; "
          "print(json.dumps(list(ic.FLAGS['sam'].parser.enum_values)))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=side, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=side), check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def methods(old_variants: list[str]) -> dict[str, list[str]]:
  """Name -> flags of every method compared (the SAM variants: those of the old side)."""
  out = dict(BASE_METHODS)
  for variant in old_variants:
    if variant != "normalized":
      out[f"sam:{variant}"] = [f"--rho={RHO}", f"--sam={variant}"]
  out.update(OPTIMIZERS)
  return out


def entry_argv(flags: list[str], mnist: str, tfds: str, *extra: str) -> list[str]:
  """`-m image_classification` with COMMON, the method's flags, the data's and `extra`."""
  return ["-m", "image_classification", *COMMON, *flags, f"--manual_dir={mnist}",
          f"--tfds_data_dir={tfds}", *extra]


def loaded(path: str) -> dict:
  with open(path, "rb") as f:
    return pickle.load(f)


def is_number(x: Any) -> bool:
  return isinstance(x, (int, float, np.number)) and not isinstance(x, bool)


class Diff:
  """What a walk over two pickles found: values compared, the largest differences of the losses
  and the eigenvalues, the paths that differ and the keys one side alone writes."""

  def __init__(self) -> None:
    self.values = 0
    self.max_loss = 0.0
    self.max_eig = 0.0
    self.differ: list[str] = []
    self.only_old: set[str] = set()
    self.only_new: set[str] = set()

  def number(self, path: str, a: float, b: float) -> None:
    self.values += 1
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
      if not (math.isnan(a) and math.isnan(b)):
        self.differ.append(f"{path}: {a!r} against {b!r}")
      return
    gap = abs(a - b)
    if "eigenvalues" in path:
      self.max_eig = max(self.max_eig, gap)
    if re.search(r"(^|\.)(loss|test_loss)(\[|$)", path):
      self.max_loss = max(self.max_loss, gap)
    if not gap <= ATOL + RTOL * max(abs(a), abs(b)):
      self.differ.append(f"{path}: {a!r} against {b!r}")

  def walk(self, a: Any, b: Any, path: str) -> None:
    """Compares old `a` with new `b` at `path`."""
    a, b = (x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in (a, b))
    if isinstance(a, dict) and isinstance(b, dict):
      general = re.sub(r"\[\d+\]", "[*]", path)
      self.only_old |= {f"{general}.{k}" for k in a.keys() - b.keys()}
      self.only_new |= {f"{general}.{k}" for k in b.keys() - a.keys()}
      for k in sorted(a.keys() & b.keys(), key=str):
        self.walk(a[k], b[k], f"{path}.{k}" if path else str(k))
    elif isinstance(a, (list, tuple, np.ndarray)) and isinstance(b, (list, tuple, np.ndarray)):
      if len(a) != len(b):
        self.differ.append(f"{path}: {len(a)} entries against {len(b)}")
        return
      for i, (x, y) in enumerate(zip(a, b)):
        self.walk(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
      self.walk(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1), path)
    elif is_number(a) and is_number(b):
      self.number(path, a, b)
    elif a != b:
      self.differ.append(f"{path}: {a!r} against {b!r}")

  @property
  def equal(self) -> bool:
    return not self.differ and not self.only_old


def compared(old: dict, new: dict) -> Diff:
  """The records, evaluations, losses and final of two pickles, clock keys aside."""
  diff = Diff()
  for key in COMPARED:
    a, b = old.get(key), new.get(key)
    if key in ("records", "evaluations"):
      a = [{k: v for k, v in e.items() if k not in CLOCK_KEYS} for e in a or []]
      b = [{k: v for k, v in e.items() if k not in CLOCK_KEYS} for e in b or []]
    elif key == "final":
      a = {k: v for k, v in (a or {}).items() if k not in FINAL_CLOCK_KEYS}
      b = {k: v for k, v in (b or {}).items() if k not in FINAL_CLOCK_KEYS}
    diff.walk(a, b, key)
  return diff


def config_changes(old: dict, new: dict) -> list[str]:
  """'flag: old -> new' for the flags both configs hold that differ, paths aside."""
  a, b = old.get("config", {}), new.get("config", {})
  return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a.keys() & b.keys())
          if not k.endswith(("_output", "_dir")) and a[k] != b[k]]


def row(name: str, old: dict, new: dict, diff: Diff, note: str = "") -> dict:
  """The figures of one comparison, printed as a table row."""
  out = {"method": name, "records": len(old["records"]), "evaluations": len(old["evaluations"]),
         "steps": len(old["losses"]["loss"]), "values": diff.values,
         "max_abs_loss_diff": diff.max_loss, "max_abs_eig_diff": diff.max_eig,
         "equal": diff.equal, "differ": diff.differ, "only_old": sorted(diff.only_old),
         "only_new": sorted(diff.only_new), "config_changes": config_changes(old, new)}
  print(f"{name:<20} {out['records']:>7} {out['evaluations']:>5} {out['steps']:>5} "
        f"{out['values']:>6} {diff.max_loss:>12.3g} {diff.max_eig:>12.3g}  "
        f"{'yes' if diff.equal else 'NO'}{note}", flush=True)
  for line in diff.differ[:8]:
    print(f"    differs: {line}")
  if diff.only_old:
    print(f"    only the old side writes: {', '.join(sorted(diff.only_old))}")
  return out


HEADER = (f"{'method':<20} {'records':>7} {'evals':>5} {'steps':>5} {'values':>6} "
          f"{'max|Δ|loss':>12} {'max|Δ|λ':>12}  equal")


def failed(what: str, proc: subprocess.CompletedProcess, log: str) -> None:
  print(f"plumbing_parity: {what} failed (exit {proc.returncode}); see {log}:\n"
        + "\n".join(proc.stdout.splitlines()[-15:]), file=sys.stderr)
  sys.exit(1)


def side_runs(side: str, runs: dict[str, list[str]], log: str, separate: bool) -> dict[str, int]:
  """Runs `image_classification` ARGV for each name -> ARGV of `runs` on the checkout `side`: in
  one process there (CHILD: the entry point's own parse and main, as the tests call it), or with
  `separate` one process each; the exit code of each."""
  if separate:
    return {name: side_run(side, ["-m", "image_classification", *argv],
                           f"{log[:-4]}_{name.replace(':', '_')}.log").returncode
            for name, argv in runs.items()}
  spec, codes = f"{log[:-4]}_runs.json", f"{log[:-4]}_codes.json"
  with open(spec, "w", encoding="utf-8") as f:
    json.dump(runs, f)
  proc = side_run(side, ["-c", CHILD, spec, codes], log)
  if proc.returncode or not os.path.exists(codes):
    failed(f"the runs on {side}", proc, log)
  with open(codes, encoding="utf-8") as f:
    return json.load(f)


def records_parity(args: argparse.Namespace, todo: dict[str, list[str]],
                   at: Any) -> tuple[list[dict], dict[str, str]]:
  """Part 1: rows, and each method's old pickle."""
  raw = {(name, side): at(f"{name.replace(':', '_')}_{side}.pkl") for name in todo
         for side in ("old", "new")}
  print(f"records parity: {len(todo)} methods of {STEPS} steps on each side", flush=True)
  for side, path in (("old", args.old), ("new", args.new)):
    runs = {name: entry_argv(flags, args.mnist_dir, at(f"tfds_{side}"), f"--max_steps={STEPS}",
                             f"--raw_data_output={raw[name, side]}", *NO_PDFS)[2:]
            for name, flags in todo.items()}
    codes = side_runs(path, runs, at(f"methods_{side}.log"), args.one_process_per_run)
    bad = [name for name, code in codes.items() if code]
    if bad:
      sys.exit(f"plumbing_parity: on the {side} side {', '.join(bad)} failed; see "
               f"{at(f'methods_{side}.log')}")
  print(HEADER)
  rows = []
  for name in todo:
    old, new = loaded(raw[name, "old"]), loaded(raw[name, "new"])
    rows.append(row(name, old, new, compared(old, new)))
  return rows, {name: raw[name, "old"] for name in todo}


def checkpoint_parity(args: argparse.Namespace, todo: dict[str, list[str]],
                      old_pickles: dict[str, str], at: Any) -> list[dict]:
  """Part 2: the old side's HALF-step checkpoint resumed by the new side to STEPS."""
  rows = []
  print(f"\ncheckpoint: the old side stops at step {HALF}, the new side resumes to {STEPS}; "
        f"compared with the old side's uninterrupted run\n{HEADER}", flush=True)
  for name in args.checkpoint_methods.split(","):
    tag = name.replace(":", "_")
    folder = at(f"ck_{tag}")
    log = at(f"ck_{tag}_old.log")
    proc = side_run(args.old, entry_argv(todo[name], args.mnist_dir, at("tfds_old"),
                                         f"--max_steps={HALF}", f"--checkpoint_dir={folder}",
                                         f"--raw_data_output={at(f'ck_{tag}_half.pkl')}",
                                         *NO_PDFS), log)
    if proc.returncode:
      failed(f"the old side's {HALF}-step {name} run", proc, log)
    log = at(f"ck_{tag}_new.log")
    raw = at(f"ck_{tag}_resumed.pkl")
    proc = side_run(args.new, entry_argv(todo[name], args.mnist_dir, at("tfds_new"),
                                         f"--max_steps={STEPS}", f"--checkpoint_dir={folder}",
                                         "--resume", f"--raw_data_output={raw}", *NO_PDFS), log)
    if proc.returncode:
      failed(f"the new side's resume of {name}", proc, log)
    resumed = re.search(r"resum\w* from the checkpoint of step (\d+)", proc.stdout)
    if name not in old_pickles:
      old_raw = at(f"{tag}_old.pkl")
      log = at(f"{tag}_old.log")
      proc = side_run(args.old, entry_argv(todo[name], args.mnist_dir, at("tfds_old"),
                                           f"--max_steps={STEPS}", f"--raw_data_output={old_raw}",
                                           *NO_PDFS), log)
      if proc.returncode:
        failed(f"{name} on the old side", proc, log)
      old_pickles[name] = old_raw
    old, new = loaded(old_pickles[name]), loaded(raw)
    note = f"  (resumed from step {resumed.group(1)})" if resumed else "  (no resume line)"
    out = row(f"{name} resumed", old, new, compared(old, new), note)
    out["resumed_from_step"] = int(resumed.group(1)) if resumed else None
    out["losses_lengths"] = {k: len(v) for k, v in new["losses"].items()}
    if len(set(out["losses_lengths"].values())) > 1:
      print(f"    note: the resumed pickle's losses lists are not equally long (new-side keys, not "
            f"compared): {out['losses_lengths']}")
    out["equal"] = out["equal"] and out["resumed_from_step"] == HALF
    rows.append(out)
  return rows


def sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def summary(path: str) -> dict[str, dict[str, str]]:
  """summary.csv's rows by run name."""
  with open(path, encoding="utf-8", newline="") as f:
    return {r["run"]: r for r in csv.DictReader(f)}


def summary_differences(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]
                        ) -> list[str]:
  """The SUMMARY_NUMBERS cells that differ beyond RTOL between two summaries."""
  if old.keys() != new.keys():
    return [f"runs {sorted(old)} against {sorted(new)}"]
  out = []
  for name in old:
    for col in SUMMARY_NUMBERS:
      a, b = old[name].get(col, ""), new[name].get(col, "")
      if a == b:
        continue
      try:
        x, y = float(a), float(b)
        if abs(x - y) <= ATOL + RTOL * max(abs(x), abs(y)):
          continue
      except ValueError:
        pass
      out.append(f"{name}.{col}: {a!r} against {b!r}")
  return out


def sweep_parity(args: argparse.Namespace, at: Any) -> dict:
  """Part 3: a sweep folder written by the old side, rerun and compared by the new side."""
  folder = at("sweep")
  argv = ["-m", "sam_edge.sweep", f"--out={folder}", "--", "image_classification",
          f"--rho=0,{RHO}", *COMMON, f"--max_steps={STEPS}", f"--manual_dir={args.mnist_dir}",
          f"--tfds_data_dir={at('tfds_old')}"]
  print(f"\nsweep folder: {folder}", flush=True)
  log = at("sweep_old.log")
  proc = side_run(args.old, argv, log)
  if proc.returncode:
    failed("the old side's sweep", proc, log)
  runs = sorted(d for d in os.listdir(folder) if os.path.isfile(os.path.join(folder, d,
                                                                            "done.json")))
  before = {r: sha256(os.path.join(folder, r, "raw.pkl")) for r in runs}
  shutil.copy(os.path.join(folder, "summary.csv"), at("summary_old.csv"))
  log = at("sweep_new.log")
  proc = side_run(args.new, argv, log)
  skipped = [line for line in proc.stdout.splitlines() if "finished already" in line]
  after = {r: sha256(os.path.join(folder, r, "raw.pkl")) for r in runs}
  compare_out = at("compare_new")
  compare_log = at("compare_new.log")
  compare = side_run(args.new, ["-m", "sam_edge.compare", folder, f"--out={compare_out}"],
                     compare_log)
  new_summary = os.path.join(compare_out, "summary.csv")
  differ = (summary_differences(summary(at("summary_old.csv")), summary(new_summary))
            if os.path.exists(new_summary) else ["compare wrote no summary.csv"])
  out = {"runs": runs, "new_sweep_exit": proc.returncode, "new_sweep_skipped": len(skipped),
         "pickles_untouched": before == after, "compare_exit": compare.returncode,
         "compare_outputs": sorted(os.listdir(compare_out)) if os.path.isdir(compare_out) else [],
         "summary_differences": differ}
  out["ok"] = (len(runs) == 2 and proc.returncode == 0 and len(skipped) == len(runs)
               and out["pickles_untouched"] and compare.returncode == 0 and not differ)
  print(f"old sweep: runs {', '.join(runs)} done")
  print(f"new sweep on that folder: exit {proc.returncode}, {len(skipped)} of {len(runs)} runs "
        f"skipped as finished, pickles {'untouched' if out['pickles_untouched'] else 'CHANGED'}")
  for line in skipped:
    print(f"    {line.strip()}")
  if proc.returncode or len(skipped) != len(runs):
    print("    " + "\n    ".join(proc.stdout.splitlines()[-10:]))
  print(f"new compare on that folder: exit {compare.returncode}, wrote "
        f"{', '.join(out['compare_outputs'])}; summary.csv against the old sweep's: "
        + ("equal" if not differ else "; ".join(differ[:6])))
  if compare.returncode:
    print("    " + "\n    ".join(compare.stdout.splitlines()[-10:]))
  print(f"sweep folder {'resumes and compares' if out['ok'] else 'DOES NOT resume or compare'}",
        flush=True)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--old", required=True, help="checkout of the old commit")
  parser.add_argument("--new", default=REPO, help="checkout of the new commit (default: this)")
  parser.add_argument("--mnist_dir", required=True, help="folder of MNIST's four IDX .gz files")
  parser.add_argument("--work", help="folder for the runs (default: a new temp folder, kept)")
  parser.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
  parser.add_argument("--checkpoint_methods", default="sam,adam",
                      help="methods whose checkpoint the new side resumes ('' for none)")
  parser.add_argument("--one_process_per_run", action="store_true",
                      help="each method's run in a process of its own (default: one per side)")
  parser.add_argument("--no_sweep", action="store_true", help="skip the sweep folder check")
  parser.add_argument("--json", help="also write the figures to this JSON file")
  args = parser.parse_args()
  args.old, args.new = os.path.abspath(args.old), os.path.abspath(args.new)
  args.mnist_dir = os.path.abspath(args.mnist_dir)
  start = time.perf_counter()
  work = args.work or tempfile.mkdtemp(prefix="plumbing_parity_")
  os.makedirs(work, exist_ok=True)
  at = lambda name: os.path.join(work, name)
  commits = {side: subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
             for side, path in (("old", args.old), ("new", args.new))}
  print(f"old {commits['old']} ({args.old}), new {commits['new']} ({args.new}); work {work}")
  old_sam, new_sam = sam_choices(args.old), sam_choices(args.new)
  skipped = [v for v in new_sam if v not in old_sam]
  every = methods(old_sam)
  picked = args.methods.split(",") if args.methods else list(every)
  checkpoints = [m for m in args.checkpoint_methods.split(",") if m]
  unknown = [m for m in picked + checkpoints if m not in every]
  if unknown:
    parser.error(f"unknown methods {unknown}; known: {', '.join(every)}")
  args.checkpoint_methods = ",".join(checkpoints)
  if skipped:
    print(f"--sam variants only the new side has, skipped: {', '.join(skipped)}")
  rows, old_pickles = records_parity(args, {m: every[m] for m in picked}, at)
  ck_rows = checkpoint_parity(args, every, old_pickles, at) if checkpoints else []
  sweep = None if args.no_sweep else sweep_parity(args, at)
  changes = sorted({c for r in rows for c in r["config_changes"]})
  only_new = sorted({k for r in rows for k in r["only_new"]})
  if only_new:
    print(f"\nkeys only the new side writes (not compared): {', '.join(only_new)}")
  if changes:
    print(f"flags both configs hold with other values: {'; '.join(changes)}")
  ok = all(r["equal"] for r in rows + ck_rows) and (sweep is None or sweep["ok"])
  seconds = time.perf_counter() - start
  print(f"{'all equal' if ok else 'DIFFERENCES FOUND'} ({seconds:.0f} s); runs and logs in {work}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump({"old": commits["old"], "new": commits["new"], "steps": STEPS, "rtol": RTOL,
                 "atol": ATOL, "sam_variants_skipped": skipped, "methods": rows,
                 "checkpoints": ck_rows, "sweep": sweep, "equal": ok, "seconds": seconds},
                f, indent=1)
  if not ok:
    sys.exit(1)


if __name__ == "__main__":
  main()
