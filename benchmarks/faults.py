"""Fault injection: SIGKILL in every phase of a run, then --resume; damaged files, then verify;
write faults (a full disk, a folder made read-only), then --resume.

    python benchmarks/faults.py [--json PATH] [--parts kills,corruptions,writes] [--devices 1,4]
                                [--seed 0] [--corpus PATH]

Workload: the tiny transformer of tests/helpers.py (1 layer, width 32, 2 heads of 16, windows
of 17 characters, batch 8) on the first 20,000 characters of tinyshakespeare (a temporary file),
`--max_steps=60 --measure_every_steps=10 --lanczos_max_steps=8 --checkpoint_every_minutes=0.002`
with every output on (four PDFs and the pickle), `--resume` always (the first attempt of a run
starts afresh). Each attempt is a process of its own: `python benchmarks/faults.py --child`,
which runs `python -m transformer`'s main with hooks around six phases:

  start-up          from the process start (imports, data, model, restore) to the loop;
  training step     one update, until its result is ready;
  measurement       one measurement;
  pickle write      `records.write_raw` (after every measurement and at the end);
  PDF write         `plots.figure.write` (each figure at the end);
  checkpoint write  `Checkpointer.save` of a new step.

Kills. A first uninterrupted run per device count fills a persistent compilation cache
(JAX_COMPILATION_CACHE_DIR in the scratch folder, so that each attempt takes seconds instead of a
minute of compiling; the cache changes no result), then an uninterrupted reference run, which must
end as the first did, logs every phase it goes through with its step and length. For each phase
one of its occurrences in the reference is drawn at random, and an instant in it: a fraction
u ~ U(0, 1) of that occurrence's length ("drawn s" of "ref. s"). The draws are visited in the
order the reference met them; an attempt is killed (`os.kill(own pid, SIGKILL)` from a timer
thread: nothing runs after it, as with `kill -9` from outside) that many seconds into the first
occurrence of that phase at or after that step, or at the end of the occurrence if it ends first
("(end)"); the next attempt resumes, and so on until an attempt finishes. A draw the
attempts cannot meet again (a run only goes forward) starts a new run. Each finished run is
compared with the reference: the measurement records (less their clock fields `time` and
`seconds`), the losses, the final steps, stop reason and test loss, and the checksums of every
array of the last checkpoint (`sha256` in its meta) must be equal; a reference measurement
missing from the run's pickle is a lost measurement. Devices: 1, and 4 simulated ones
(XLA_FLAGS=--xla_force_host_platform_device_count=4 in the child, the batch sharded over them).

Corruptions, on a copy of the one-device reference run's folder (pickle and checkpoints): a
flipped bit (xor 0x40 at a random offset) in the newest step's largest array file; issue 24's 8
flipped bits across it; a flipped bit (a random bit of a random byte) in its meta file; a flipped
bit in a measured float of the pickle (one of the 8-byte floats among its records and losses,
drawn at random); the largest array file truncated to half; the pickle truncated to half; the
newest step's arrays folder deleted. Detected: `python -m sam_edge.verify` on the run folder
exits 1 with an UNSOUND line for the damaged item; for a checkpoint, in addition, `--resume`
skips the damaged step (its line names it), resumes from the older step and ends equal to the
reference.

Writes, on one device (benchmarks/write_faults.py, without root): no space left from the first
checkpoint write at or after step 30 on (orbax's own file writes fail half-way through a save), from
the first pickle write at or after step 30, from the first PDF write (at the end); a folder made
read-only at step 30 (every write fails with "Permission denied" from then on). Where root can
mount one, a real full disk too: the run on a 300 kB tmpfs. Each case reports its `exit_code` (74
expected), `claims_unwritten` (whether its outputs line names a file it failed to write, or a
checkpoint step that is not on disk, or its closing sentence draws on a PDF it failed to write;
false expected), `tracebacks` printed (0 expected) and `resume_equal`: the fault gone (the tmpfs
grown to 64 MB), a `--resume` must exit 0 and end equal to the uninterrupted run.

Prints one row per kill, per run, per corruption and per write case; --json writes
{"kills": {"runs", "kills", "lost_measurements", "equal"}, "corruptions": {"cases", "detected"},
"writes": [{"case", "exit_code", "unwritten", "claims_unwritten", "tracebacks", "resume_equal",
"newest_state"}]}.
"""

import argparse
import contextlib
import dataclasses
import json
import math
import os
import pathlib
import pickle
import pickletools
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import write_faults  # noqa: E402  (the repository on the path first)

TINY = ["--num_layers=1", "--model_size=32", "--num_heads=2", "--key_size=16",
        "--sequence_length=16", "--batch_size=8"]          # tests/helpers.py TINY_TRANSFORMER
MAX_STEPS = 60
RUN = [f"--max_steps={MAX_STEPS}", "--measure_every_steps=10", "--lanczos_max_steps=8",
       "--checkpoint_every_minutes=0.002", "--resume"]
OUTPUTS = {"eigs_curve_output": "eigs.pdf", "eigs_se_only_output": "eigs_se_only.pdf",
           "alignment_curve_output": "alignment.pdf", "loss_curve_output": "loss.pdf",
           "raw_data_output": "raw.pkl"}
PHASES = ("start-up", "training step", "measurement", "pickle write", "PDF write",
          "checkpoint write")
PLAN_ENV = "SAM_EDGE_FAULTS_PLAN"
NOT_WRITTEN = 74                      # sam_edge.run.outputs.NOT_WRITTEN
CLOCKS = ("time", "seconds")


# ---------------------------------------------------------------------------------------------
# The child: a run of `python -m transformer` with its phases hooked.


class Hooks:
  """Logs each phase (reference) or kills the process inside the planned one (kill attempts)."""

  def __init__(self, plan: dict):
    self.target = plan.get("target")
    self.events = open(plan["events"], "a", encoding="utf-8")
    self.step = 0
    self.seen: dict = {}
    self.seq = 0
    self.armed = False
    self.lock = threading.Lock()
    self.startup = time.perf_counter()
    if self.target and self.target["phase"] == "start-up":
      self._arm("start-up", 0, self.startup)

  def emit(self, **event) -> None:
    self.events.write(json.dumps(event) + "\n")
    self.events.flush()

  def kill(self, phase: str, step: int, start: float, at_end: bool) -> None:
    with self.lock:                  # the timer and the end of the phase may race: one kill
      self.emit(kind="killed", phase=phase, step=step, into_s=time.perf_counter() - start,
                at_end=at_end)
      os.kill(os.getpid(), signal.SIGKILL)
      time.sleep(60)

  def _arm(self, phase: str, step: int, start: float) -> None:
    self.armed = True
    timer = threading.Timer(self.target["delay_s"], self.kill, (phase, step, start, False))
    timer.daemon = True
    timer.start()

  def _due(self, phase: str, step: int, index: int) -> bool:
    t = self.target
    return (t is not None and not self.armed and phase == t["phase"]
            and (step, index) >= (t["step"], t["index"]))

  @contextlib.contextmanager
  def phase(self, name: str, step: int):
    index = self.seen.get((name, step), 0)
    self.seen[(name, step)] = index + 1
    start = time.perf_counter()
    mine = self._due(name, step, index)
    if mine:
      self._arm(name, step, start)
    yield
    self.end(name, step, index, start, mine)

  def end(self, name: str, step: int, index: int, start: float, mine: bool) -> None:
    if mine:
      self.kill(name, step, start, True)
    if self.target is None:
      self.emit(kind="phase", phase=name, step=step, index=index,
                seconds=time.perf_counter() - start, seq=self.seq)
      self.seq += 1


def child(argv: list[str]) -> int:
  """`python -m transformer` with the phases of PLAN_ENV's plan hooked (see the docstring)."""
  plan = json.loads(os.environ[PLAN_ENV])
  hooks = Hooks(plan)
  import jax

  import transformer
  from sam_edge import records
  from sam_edge.cli import main as cli
  from sam_edge.plots import figure
  from sam_edge.run import checkpoints, components, loop

  run_loop, build, save = loop.run_loop, components.components, checkpoints.Checkpointer.save
  write_raw, write_pdf = records.write_raw, figure.write

  def hooked_run_loop(parts, state, *args, **kwargs):
    hooks.step = int(state.step)
    hooks.end("start-up", 0, 0, hooks.startup, hooks.armed and hooks.target["phase"] == "start-up")
    return run_loop(parts, state, *args, **kwargs)

  def timed(name: str, fn):
    def call(state, *args):
      step = int(state.step)
      with hooks.phase(name, step):
        out = jax.block_until_ready(fn(state, *args))
      hooks.step = step + (name == "training step")
      return out
    return call

  def hooked_components(*args, **kwargs):
    parts = build(*args, **kwargs)
    return dataclasses.replace(parts, update=timed("training step", parts.update),
                               measure=timed("measurement", parts.measure))

  def hooked_save(self, state, *args):
    if int(state.step) in self.all_steps():
      return save(self, state, *args)
    with hooks.phase("checkpoint write", int(state.step)):
      return save(self, state, *args)

  def hooked_write_raw(*args):
    with hooks.phase("pickle write", hooks.step):
      return write_raw(*args)

  def hooked_write_pdf(*args, **kwargs):
    with hooks.phase("PDF write", hooks.step):
      return write_pdf(*args, **kwargs)

  if (plan.get("write_fault") or {}).get("case") in write_faults.CASES:    # else a real disk
    write_faults.planned(plan["write_fault"], lambda: hooks.step).install()
  loop.run_loop, components.components = hooked_run_loop, hooked_components
  checkpoints.Checkpointer.save = hooked_save
  records.write_raw, figure.write = hooked_write_raw, hooked_write_pdf
  return cli.entry(transformer.TASK, transformer.FLAGS, argv)


# ---------------------------------------------------------------------------------------------
# The parent: attempts, runs, comparisons, corruptions.


class Harness:
  def __init__(self, args, root: pathlib.Path):
    self.args, self.root = args, root
    self.rng = random.Random(args.seed)
    self.corpus = root / "corpus.txt"
    self.corpus.write_bytes(pathlib.Path(args.corpus).read_bytes()[:20000])
    self.attempts = 0

  def flags(self, folder: pathlib.Path) -> list[str]:
    return [f"--training_data={self.corpus}", *TINY, *RUN,
            f"--checkpoint_dir={folder / 'ck'}",
            *[f"--{flag}={folder / name}" for flag, name in OUTPUTS.items()]]

  def attempt(self, folder: pathlib.Path, devices: int, target=None,
              write_fault=None) -> tuple[int, list, str]:
    """One process of the run in `folder`: (exit code, its events, its stdout); `self.stderr` is
    its stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    self.attempts += 1
    events = self.root / f"events{self.attempts}.jsonl"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", PLAN_ENV: json.dumps(
        {"events": str(events), "target": target, "write_fault": write_fault}),
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_COMPILATION_CACHE_DIR": str(self.root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
    done = subprocess.run([sys.executable, __file__, "--child", *self.flags(folder)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1200)
    lines = events.read_text().splitlines() if events.exists() else []
    found = [json.loads(line) for line in lines]
    expected = (0, -signal.SIGKILL) + ((NOT_WRITTEN,) if write_fault else ())
    if done.returncode not in expected:
      sys.exit(f"faults: an attempt failed ({done.returncode}):\n{done.stderr[-3000:]}")
    self.stderr = done.stderr
    return done.returncode, found, done.stdout

  def verify(self, path: pathlib.Path) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "sam_edge.verify", str(path)], cwd=REPO,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                          text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def resumed_from(stdout: str):
  marker = "resuming from the checkpoint of step "
  return int(stdout.split(marker)[1].split()[0]) if marker in stdout else None


def end_of(folder: pathlib.Path) -> dict:
  """What a finished run ended with: its pickle and the array checksums of its last step."""
  with open(folder / "raw.pkl", "rb") as f:
    raw = pickle.load(f)
  last = max(int(p.name) for p in (folder / "ck").iterdir() if p.name.isdigit())
  meta = json.loads((folder / "ck" / str(last) / "meta" / "metadata").read_text())
  return {"records": [{k: v for k, v in r.items() if k not in CLOCKS} for r in raw["records"]],
          "losses": raw["losses"], "steps": raw["final"].get("steps"),
          "stopped_because": raw["final"].get("stopped_because"),
          "test_loss": raw["final"].get("test_loss"), "last_step": last,
          "arrays": meta["sha256"]["arrays"]}


def compare(end: dict, reference: dict) -> tuple[int, bool]:
  """(measurements of the reference missing from `end`, whether `end` equals it)."""
  steps = {r["step"] for r in end["records"]}
  lost = sum(r["step"] not in steps for r in reference["records"])
  return lost, end == reference


def reference_run(h: Harness, devices: int) -> tuple[dict, list]:
  """(the end of an uninterrupted run on `devices` devices, the phases it went through), after a
  first run that fills the compilation cache and must end the same."""
  h.attempt(h.root / f"warm_{devices}", devices)
  ref_folder = h.root / f"reference_{devices}"
  _, events, _ = h.attempt(ref_folder, devices)
  reference = end_of(ref_folder)
  if end_of(h.root / f"warm_{devices}") != reference:
    sys.exit(f"faults: two uninterrupted runs on {devices} devices ended differently")
  return reference, events


def kill_runs(h: Harness, devices: int) -> tuple[list, list, dict]:
  """The kills on `devices` devices: (kill rows, run rows, the reference's end)."""
  reference, events = reference_run(h, devices)
  log = [e for e in events if e["kind"] == "phase"]
  startup = {"phase": "start-up", "step": 0, "index": 0, "seq": -1,
             "seconds": next(e["seconds"] for e in log if e["phase"] == "start-up")}
  draws = []
  for phase in PHASES:
    pick = startup if phase == "start-up" else h.rng.choice(
        [e for e in log if e["phase"] == phase])
    draws.append({"phase": phase, "step": pick["step"], "index": pick["index"],
                  "delay_s": h.rng.random() * pick["seconds"], "seq": pick["seq"],
                  "length_s": pick["seconds"]})
  pending = sorted(draws, key=lambda d: d["seq"])
  kills, runs, tries = [], [], {}
  while pending:
    folder = h.root / f"run_{devices}_{len(runs) + 1}"
    landed = 0
    while True:
      target = pending[0] if pending else None
      code, events, out = h.attempt(folder, devices, target)
      if kills and kills[-1]["resumed"] is None and kills[-1]["folder"] == str(folder):
        kills[-1]["resumed"] = resumed_from(out) if resumed_from(out) is not None else "start"
      killed = [e for e in events if e["kind"] == "killed"]
      if killed:
        k = killed[0]
        kills.append({"devices": devices, "run": len(runs) + 1, "phase": k["phase"],
                      "step": k["step"], "into_s": k["into_s"], "at_end": k["at_end"],
                      "delay_s": target["delay_s"], "length_s": target["length_s"],
                      "resumed": None, "folder": str(folder)})
        pending.pop(0)
        landed += 1
        continue
      if target is not None:                       # not met by this run: the next run meets it
        tries[target["phase"]] = tries.get(target["phase"], 0) + 1
        if tries[target["phase"]] > 1:
          pending.pop(0)                           # met by no run from the start: give it up
      break
    lost, equal = compare(end_of(folder), reference)
    runs.append({"devices": devices, "run": len(runs) + 1, "kills": landed, "lost": lost,
                 "equal": equal})
  return kills, runs, reference


def flip_bit(path: pathlib.Path, offset: int, mask: int) -> None:
  data = bytearray(path.read_bytes())
  data[offset] ^= mask
  path.write_bytes(bytes(data))


def largest_array_file(step: pathlib.Path) -> pathlib.Path:
  return max((p for p in (step / "arrays").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)


def measured_floats(path: pathlib.Path) -> list[int]:
  """Offsets of the 8-byte floats (BINFLOAT) among the pickle's records and losses."""
  data, found, inside = path.read_bytes(), [], False
  for op, arg, pos in pickletools.genops(data):
    if op.name in ("SHORT_BINUNICODE", "BINUNICODE") and arg in ("records", "evaluations"):
      inside = arg == "records"                    # the keys after 'records': losses, then these
    elif inside and op.name == "BINFLOAT" and not math.isnan(arg):   # NaN stays NaN in JSON
      found.append(pos + 1)
  return found


def corruptions(h: Harness, reference: dict) -> list[dict]:
  """Each damage on a copy of the one-device reference folder: found by verify, and (for a
  checkpoint) skipped by --resume, whose run then ends as the reference did."""
  source = h.root / "reference_1"
  newest = max(int(p.name) for p in (source / "ck").iterdir() if p.name.isdigit())
  rng = h.rng

  def array_bit(f):
    path = largest_array_file(f / "ck" / str(newest))
    flip_bit(path, rng.randrange(path.stat().st_size), 0x40)

  def eight_bits(f):
    path = largest_array_file(f / "ck" / str(newest))
    size = path.stat().st_size
    for i in range(1, 9):
      flip_bit(path, i * size // 9, 0x40)

  def meta_bit(f):
    path = f / "ck" / str(newest) / "meta" / "metadata"
    flip_bit(path, rng.randrange(path.stat().st_size), 1 << rng.randrange(8))

  def pickle_bit(f):
    offset = rng.choice(measured_floats(f / "raw.pkl")) + rng.randrange(8)
    flip_bit(f / "raw.pkl", offset, 1 << rng.randrange(8))

  def truncate(path: pathlib.Path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])

  cases = [("a flipped bit in an array file", "checkpoint", array_bit),
           ("8 flipped bits across the largest array file", "checkpoint", eight_bits),
           ("a flipped bit in a meta file", "checkpoint", meta_bit),
           ("a flipped bit in the pickle", "pickle", pickle_bit),
           ("a truncated array file", "checkpoint",
            lambda f: truncate(largest_array_file(f / "ck" / str(newest)))),
           ("a truncated pickle", "pickle", lambda f: truncate(f / "raw.pkl")),
           ("a deleted folder (a step's arrays)", "checkpoint",
            lambda f: shutil.rmtree(f / "ck" / str(newest) / "arrays"))]
  rows = []
  for n, (name, kind, damage) in enumerate(cases, 1):
    folder = h.root / f"corruption_{n}"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("events*"))
    damage(folder)
    item = folder / "raw.pkl" if kind == "pickle" else folder / "ck" / str(newest)
    code, text = h.verify(folder)
    flagged = code == 1 and f"{item}: UNSOUND: " in text
    why = next((line.split(": UNSOUND: ", 1)[1] for line in text.splitlines()
                if line.startswith(f"{item}: UNSOUND: ")), text.strip().splitlines()[-1])
    row = {"case": name, "verify": flagged, "why": why, "fallback": None, "equal": None}
    if kind == "checkpoint":
      code, _, out = h.attempt(folder, 1)
      row["fallback"] = (f"skipping the checkpoint of step {newest}: it is unsound" in out
                         and resumed_from(out) is not None and resumed_from(out) < newest)
      row["equal"] = code == 0 and compare(end_of(folder), reference) == (0, True)
    row["detected"] = flagged and (kind == "pickle" or (row["fallback"] and row["equal"]))
    rows.append(row)
  return rows


def write_runs(h: Harness, reference: dict) -> list[dict]:
  """Each write fault of write_faults.CASES (and a real full disk where root can mount a tmpfs),
  on one device: its exit code, whether its last lines name an unwritten output as written, the
  tracebacks it printed; then, the fault gone (the tmpfs grown), --resume, whose run must end as
  the reference did."""
  rows = []
  for n, case in enumerate([*write_faults.CASES, write_faults.REAL_DISK], 1):
    folder = h.root / f"write_{n}"
    real = case == write_faults.REAL_DISK
    folder.mkdir()
    if real and not write_faults.mount_tmpfs(str(folder), "300k"):
      print(f"(no {case}: mounting a tmpfs needs root)")
      continue
    try:
      code, _, out = h.attempt(folder, 1, write_fault={"case": case, "folder": str(folder)})
      failed, claims = write_faults.said_unwritten(out, h.stderr, str(folder))
      state = [line for line in out.splitlines() if line.startswith("error: the newest")]
      tracebacks = (out + h.stderr).count("Traceback")
      if real:
        write_faults.mount_tmpfs(str(folder), "64m")
      again, _, _ = h.attempt(folder, 1)
      rows.append({"case": case, "exit_code": code, "unwritten": len(failed),
                   "claims_unwritten": claims, "tracebacks": tracebacks,
                   "resume_equal": again == 0 and compare(end_of(folder), reference) == (0, True),
                   "newest_state": state[-1][len("error: "):] if state else ""})
    finally:
      if real:
        write_faults.unmount(str(folder))
  return rows


def yes(v) -> str:
  return "-" if v is None else ("yes" if v else "NO")


def report_kills(kills: list, runs: list) -> None:
  print("kills (SIGKILL at a random instant of a phase; the next attempt resumes)")
  print(f"{'devices':>7} {'run':>3}  {'phase':<16} {'step':>4} {'drawn s':>8} {'of (ref.)':>9} "
        f"{'killed after s':>16} {'resumed from':>12}")
  for k in kills:
    after = f"{k['into_s']:.4f}" + (" (end)" if k["at_end"] else "")
    print(f"{k['devices']:>7} {k['run']:>3}  {k['phase']:<16} {k['step']:>4} "
          f"{k['delay_s']:>8.4f} {k['length_s']:>9.4f} {after:>16} {str(k['resumed']):>12}")
  print("\nruns (each compared at its end with the uninterrupted run)")
  print(f"{'devices':>7} {'run':>3} {'kills':>5} {'lost measurements':>17} {'end equal':>9}")
  for r in runs:
    print(f"{r['devices']:>7} {r['run']:>3} {r['kills']:>5} {r['lost']:>17} "
          f"{'yes' if r['equal'] else 'NO':>9}")


def report_corruptions(cases: list) -> None:
  print("\ncorruptions (verify exits 1 naming the item; a damaged step is skipped on --resume)")
  print(f"{'case':<46} {'verify':>6} {'fallback':>8} {'end equal':>9} {'detected':>8}  verify says")
  for c in cases:
    print(f"{c['case']:<46} {yes(c['verify']):>6} {yes(c['fallback']):>8} "
          f"{yes(c['equal']):>9} {yes(c['detected']):>8}  {c['why'][:90]}")


def report_writes(writes: list) -> None:
  print("\nwrites (the fault from the first such write at or after step 30; then --resume once "
        "the disk has room)")
  print(f"{'case':<34} {'exit_code':>9} {'unwritten':>9} {'claims_unwritten':>16} "
        f"{'tracebacks':>10} {'resume_equal':>12}")
  for w in writes:
    print(f"{w['case']:<34} {w['exit_code']:>9} {w['unwritten']:>9} "
          f"{str(w['claims_unwritten']).lower():>16} {w['tracebacks']:>10} "
          f"{str(w['resume_equal']).lower():>12}")
  for w in writes:
    print(f"  {w['case']}: {w['newest_state']}")


def main() -> None:
  if sys.argv[1:2] == ["--child"]:
    sys.exit(child(sys.argv[2:]))
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", help="write the totals here")
  parser.add_argument("--devices", default="1,4")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" /
                                              "tinyshakespeare.txt"))
  parser.add_argument("--parts", default="kills,corruptions,writes",
                      help="which faults: kills, corruptions, writes (comma-separated)")
  parser.add_argument("--keep", help="keep the run folders here (default: a temporary folder)")
  args = parser.parse_args()
  started = time.time()
  with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
    root = pathlib.Path(args.keep or scratch)
    root.mkdir(parents=True, exist_ok=True)
    h = Harness(args, root)
    parts = args.parts.split(",")
    kills, runs, references = [], [], {}
    for devices in (int(d) for d in args.devices.split(",")) if "kills" in parts else ():
      k, r, references[devices] = kill_runs(h, devices)
      kills += k
      runs += r
    if 1 not in references and {"corruptions", "writes"} & set(parts):
      references[1], _ = reference_run(h, 1)
    cases = corruptions(h, references[1]) if "corruptions" in parts else []
    writes = write_runs(h, references[1]) if "writes" in parts else []
  if "kills" in parts:
    report_kills(kills, runs)
  if "corruptions" in parts:
    report_corruptions(cases)
  if "writes" in parts:
    report_writes(writes)
  print(f"\n{h.attempts} processes in {time.time() - started:.0f} s")
  totals = {"kills": {"runs": len(runs), "kills": len(kills),
                      "lost_measurements": sum(r["lost"] for r in runs),
                      "equal": all(r["equal"] for r in runs)},
            "corruptions": {"cases": len(cases), "detected": sum(c["detected"] for c in cases)},
            "writes": writes}
  print(json.dumps(totals))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(totals, f, indent=1)


if __name__ == "__main__":
  main()
