"""Issue 39's done-when, checked end to end: a streamed run on a generated dataset of at least
20,000 small JPEGs trains, measures λ1 and evaluates; killed with SIGKILL mid-epoch and resumed,
its records equal those of an uninterrupted run.

Data: --examples (20,000) training and TEST_EXAMPLES test SIDE×SIDE greyscale JPEGs of CLASSES
classes (each class a fixed random template, seeded, times a random contrast plus noise, so a
small MLP learns them, not perfectly), written once per (count, seed) as two ArrayRecord files
with the project's writer (`stream_sources.write_image_records`) into --work (default: a temp
folder, kept for later runs).

Runs: `python -m image_classification` streamed from those files (`--data_pipeline=stream`,
--data_workers=WORKERS, an MLP, batch BATCH so an epoch is --examples / BATCH steps, SAM,
λ1 every MEASURE_EVERY steps, test metrics every EVAL_EVERY steps, --max_steps EPOCHS epochs),
each in a child process of this script (`--child`, which hands the run these sources in place
of TFDS's, as the tests' stream entry does):

  A  uninterrupted, to the end;
  B  the same command with a checkpoint every CHECKPOINT_MINUTES, SIGKILLed KILL_DELAY_S after
     its checkpoint folder first holds a step at or past KILL_AFTER epochs (mid-epoch 2, so
     that the kill falls between two checkpoints and the resumed run redoes the steps past the
     last one), then rerun with --resume to the end (through the start of epoch 3).

Compared for equality: the records and the evaluations, each entry without its host-clock keys
(CLOCK_KEYS: `time`, the training time when it was taken, and `seconds`, its wall-clock cost),
the losses (step, loss, train_error of every step), and `final` without FINAL_CLOCK_KEYS (the
training and wall-clock times and the records' checksum, which covers `time`): its test metrics,
steps, epochs and the rest. Prints a table (and the keys of any entry that differs) and, with
--json PATH, writes its figures; exits with 1 when anything compared differs.

    python benchmarks/stream_resume.py [--json PATH] [--examples 20000] [--work DIR]
"""

import argparse
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SIDE, CLASSES, TEST_EXAMPLES, SEED = 16, 10, 2000, 0
BATCH, EPOCHS, KILL_AFTER = 100, 2.25, 1.5
WORKERS, MEASURE_EVERY, EVAL_EVERY = 1, 50, 100
CHECKPOINT_MINUTES = 0.005            # 0.3 s: a checkpoint every dozen steps or so
KILL_DELAY_S = 0.15                   # from seeing that checkpoint to SIGKILL: between two
CLOCK_KEYS = ("seconds", "time")      # a record's / evaluation's host-clock keys (docs/outputs.md)
FINAL_CLOCK_KEYS = ("train_time", "elapsed", "records_sha256")   # final's (the sha covers `time`)
NO_PDFS = ["--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
           "--loss_curve_output=", "--eval_curve_output="]
RUN_TIMEOUT_S = 900


def write_images(path: str, count: int, seed: int) -> None:
  """`count` SIDE×SIDE grey JPEGs with labels in [0, CLASSES) (module doc), to ArrayRecord."""
  from PIL import Image

  from sam_edge.data import stream_sources
  templates = np.random.default_rng(SEED).uniform(-1.0, 1.0, (CLASSES, SIDE, SIDE))
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, CLASSES, count)
  encoded = []
  for label in labels:
    pixels = 128 + rng.uniform(8, 30) * templates[label] + rng.normal(0, 60, (SIDE, SIDE))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    encoded.append(out.getvalue())
  stream_sources.write_image_records(path, encoded, labels)


def dataset(work: str, examples: int) -> tuple[str, str]:
  """(training file, test file) in `work`, written if missing."""
  os.makedirs(work, exist_ok=True)
  paths = []
  for split, count, seed in (("train", examples, SEED + 1), ("test", TEST_EXAMPLES, SEED + 2)):
    path = os.path.join(work, f"{split}_{count}_{SIDE}px_seed{seed}.array_record")
    if not os.path.exists(path):
      print(f"writing {count} {SIDE}x{SIDE} JPEGs to {path} (once)", flush=True)
      write_images(path + ".tmp", count, seed)
      os.replace(path + ".tmp", path)
    paths.append(path)
  return paths[0], paths[1]


def child(train: str, test: str, args: list[str]) -> int:
  """`python -m image_classification ARGS` on the two files as a 10-class dataset."""
  import image_classification
  from sam_edge.cli import main as cli
  from sam_edge.data import stream_sources
  from sam_edge.tasks import image_stream
  sources = image_stream.Sources(stream_sources.ImageRecords((train,)),
                                 stream_sources.ImageRecords((test,)), CLASSES)
  image_stream.open_sources = lambda f, log: sources
  cli.parse_flags(image_classification.FLAGS, [image_classification.PROG, *args])
  return image_classification.main([])


def command(files: tuple[str, str], examples: int, raw: str, folder: str,
            *extra: str) -> list[str]:
  """The child command of one run writing `raw` with checkpoints in `folder`."""
  steps = round(EPOCHS * examples / BATCH)
  return [sys.executable, os.path.abspath(__file__), "--child", *files,
          "--nn_architecture=MLP", "--mlp_width=64", "--mlp_depth=2",
          f"--batch_size={BATCH}", f"--max_steps={steps}", "--step_size=0.5", "--rho=0.05",
          "--data_pipeline=stream", f"--data_workers={WORKERS}", f"--seed={SEED}",
          f"--measure_every_steps={MEASURE_EVERY}", f"--eval_every_steps={EVAL_EVERY}",
          "--num_principal_components=1", "--lanczos_max_steps=20",
          f"--checkpoint_dir={folder}", *NO_PDFS, f"--raw_data_output={raw}", *extra]


def checkpoint_steps(folder: str) -> list[int]:
  """The steps of the checkpoints in `folder`, ascending."""
  if not os.path.isdir(folder):
    return []
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def finished(cmd: list[str], log: str) -> str:
  """Runs `cmd` to the end, its output to `log`; its stdout (exits on failure)."""
  with open(log, "w", encoding="utf-8") as out:
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=out, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    out.write(proc.stdout)
  if proc.returncode:
    sys.exit(f"stream_resume: a run failed ({proc.returncode}); see {log}")
  return proc.stdout


def killed(cmd: list[str], folder: str, at_step: int, log: str) -> int:
  """Starts `cmd`, SIGKILLs it KILL_DELAY_S after `folder` first holds a checkpoint of step ≥
  `at_step`; the step of the last checkpoint then (exits if the run ends first)."""
  with open(log, "w", encoding="utf-8") as out:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + RUN_TIMEOUT_S
      while not (steps := checkpoint_steps(folder)) or steps[-1] < at_step:
        if proc.poll() is not None or time.time() > deadline:
          sys.exit(f"stream_resume: the run to kill ended (or hung) before a checkpoint of "
                   f"step {at_step}; see {log}")
        time.sleep(0.02)
      time.sleep(KILL_DELAY_S)
      if proc.poll() is not None:
        sys.exit(f"stream_resume: the run to kill ended before the kill; see {log}")
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=60)
    finally:
      proc.kill()
  return checkpoint_steps(folder)[-1]


def stripped(entries: list[dict]) -> list[dict]:
  """`entries` without their CLOCK_KEYS."""
  return [{k: v for k, v in e.items() if k not in CLOCK_KEYS} for e in entries]


def same(a: Any, b: Any) -> bool:
  """Exact equality of nested lists / dicts / arrays / floats (NaN equal to NaN)."""
  if isinstance(a, dict) and isinstance(b, dict):
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
  if isinstance(a, (np.ndarray, np.generic, float)) or isinstance(b, (np.ndarray, np.generic)):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
  return a == b


def differences(a: list[dict], b: list[dict]) -> list[str]:
  """'entry i: key' for each entry key that differs (for the printed report)."""
  if len(a) != len(b):
    return [f"{len(a)} against {len(b)} entries"]
  return [f"entry {i}: {k}" for i, (x, y) in enumerate(zip(a, b))
          for k in sorted(x.keys() | y.keys()) if not same(x.get(k), y.get(k))]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the figures to this JSON file")
  parser.add_argument("--examples", type=int, default=20000, help="training JPEGs")
  parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(),
                                                     "sam_edge_stream_resume"))
  if len(sys.argv) > 1 and sys.argv[1] == "--child":
    sys.exit(child(sys.argv[2], sys.argv[3], sys.argv[4:]))
  args = parser.parse_args()
  start = time.perf_counter()
  files = dataset(args.work, args.examples)
  per_epoch = args.examples // BATCH
  steps = round(EPOCHS * args.examples / BATCH)
  stamp = time.strftime("%Y%m%d_%H%M%S")
  run_dir = os.path.join(args.work, f"runs_{stamp}_{os.getpid()}")
  os.makedirs(run_dir)
  at = lambda name: os.path.join(run_dir, name)
  print(f"run A (uninterrupted, {steps} steps) ...", flush=True)
  finished(command(files, args.examples, at("a.pkl"), at("ck_a")), at("a.log"))
  kill_step = round(KILL_AFTER * per_epoch)
  b = command(files, args.examples, at("b.pkl"), at("ck_b"),
              f"--checkpoint_every_minutes={CHECKPOINT_MINUTES}")
  print(f"run B (SIGKILL {KILL_DELAY_S}s after a checkpoint of step >= {kill_step} exists) ...",
        flush=True)
  killed_at = killed(b, at("ck_b"), kill_step, at("b_killed.log"))
  print(f"run B killed after its checkpoint of step {killed_at}; resuming ...", flush=True)
  out = finished(b + ["--resume"], at("b_resumed.log"))
  resumed = re.search(r"resuming from the checkpoint of step (\d+)", out)
  ra = pickle.loads(open(at("a.pkl"), "rb").read())
  rb = pickle.loads(open(at("b.pkl"), "rb").read())
  clock = sorted({k for e in ra["records"] + ra["evaluations"] for k in e if k in CLOCK_KEYS})
  recs_a, recs_b = stripped(ra["records"]), stripped(rb["records"])
  evals_a, evals_b = stripped(ra["evaluations"]), stripped(rb["evaluations"])
  final_a, final_b = ({k: v for k, v in r["final"].items() if k not in FINAL_CLOCK_KEYS}
                      for r in (ra, rb))
  lam = [float(r["eigenvalues"][0]) for r in ra["records"] if r.get("eigenvalues")]
  figures = {
      "examples": args.examples, "test_examples": TEST_EXAMPLES, "batch_size": BATCH,
      "steps": steps, "steps_per_epoch": per_epoch, "epochs": steps / per_epoch,
      "killed_after_checkpoint_step": killed_at,
      "resumed_from_step": int(resumed.group(1)) if resumed else None,
      "killed_at_epoch": killed_at / per_epoch,
      "records": len(ra["records"]), "evaluations": len(ra["evaluations"]),
      "lambda1_first": lam[0] if lam else None, "lambda1_last": lam[-1] if lam else None,
      "final_test_error": float(final_a["test_error"]),
      "final_test_loss": float(final_a["test_loss"]),
      "records_equal": same(recs_a, recs_b), "evaluations_equal": same(evals_a, evals_b),
      "losses_equal": same(ra["losses"], rb["losses"]),
      "final_equal": same(final_a, final_b),
      "clock_keys_excluded": clock + list(FINAL_CLOCK_KEYS), "seconds": time.perf_counter() - start,
  }
  for name, x, y in (("records", recs_a, recs_b), ("evaluations", evals_a, evals_b),
                     ("final", [final_a], [final_b])):
    for line in differences(x, y)[:10]:
      print(f"  {name} differ: {line}")
  width = max(len(k) for k in figures)
  for k, v in figures.items():
    print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
  print(f"runs, logs and checkpoints in {run_dir}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as handle:
      json.dump(figures, handle, indent=1)
  if not all(figures[k] for k in ("records_equal", "evaluations_equal", "losses_equal",
                                  "final_equal")):
    sys.exit(1)


if __name__ == "__main__":
  main()
