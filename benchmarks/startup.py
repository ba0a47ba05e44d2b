"""Start-up: seconds from process start to the end of the first training step and to the end of
the first measurement, with an empty compilation cache and with a warm one.

    mlp          the first run of README (`bash run.sh`): SAM on 5,000 MNIST images, full batch,
                 an MLP of depth 3 and width 100 (89,610 parameters)
    transformer  the default transformer on tinyshakespeare, ρ = 0.1

Every start is a fresh process of the entry point (`python benchmarks/startup.py --child ...`
runs `cli.entry` with the command's own flags) that stops as soon as the event is reached:
`first_step` runs without measurements (`--hessian_check_gap=0`) and ends when step 0's loss is
read back; `first_measurement` measures at step 0 and ends when that measurement's record
arrives. `cold` starts with an empty `--compilation_cache_dir`; `warm` reuses the folder the cold
start just filled. Cold and warm starts alternate, `--repeats` times; each figure is the least
over the repeats. The dataset is prepared once beforehand (TFDS), so only compilation differs.

A start's seconds are split along its timeline (the warm first step's in `warm_breakdown`, the
first measurement's, cold and warm, in `cold_measurement_breakdown` and
`warm_measurement_breakdown`):
  imports      process start until the command's modules, jax among them, are imported;
  data         building the problem (reading the data, the model's initial parameters), less the
               compilations inside it; `tensorflow_import` of it is TensorFlow's and TFDS's import
               (`python -X importtime`);
  compilation  tracing, lowering and XLA compilation or the cache's read (jax's compile events,
               their union);
  first_step   the rest: setting up the state and running the step (`measurement`: running
               the measurement, whose Hessian-vector products no cache can skip).

    python benchmarks/startup.py [--json PATH] [--repeats 3] [--problems mlp,transformer]

JSON: {problem: {"cold_first_step", "warm_first_step", "cold_first_measurement",
"warm_first_measurement", "warm_breakdown": {"imports", "data", "tensorflow_import",
"compilation", "first_step"}, "cold_measurement_breakdown" and "warm_measurement_breakdown":
{..., "measurement"}, "speedup_first_step", "speedup_first_measurement"}}. Run it on a quiet
machine: the figures are seconds of wall-clock time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

T0 = time.time()                                  # the child's first instant after start-up

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
NO_OUTPUTS = ["--raw_data_output=", "--eigs_curve_output=", "--eigs_se_only_output=",
              "--alignment_curve_output=", "--loss_curve_output="]
PROBLEMS = {
    "mlp": ("image_classification", [
        "--rho=0.05", "--step_size=1.0", "--mlp_depth=3", "--mlp_width=100", "--batch_size=5000",
        "--mini_training_set_num_batches=1", "--mini_test_set_num_batches=2",
        "--lanczos_max_steps=40", f"--manual_dir={SHARED}/mnist"]),
    "transformer": ("transformer", [
        "--rho=0.1", f"--training_data={SHARED}/tinyshakespeare.txt"]),
}
EVENTS = {"first_step": ["--hessian_check_gap=0"], "first_measurement": ["--measure_every_steps=1"]}
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def union_seconds(spans: list[tuple[float, float]], start: float, end: float) -> float:
  """The length of the union of `spans`, clipped to [start, end]."""
  total, reach = 0.0, start
  for a, b in sorted(spans):
    a, b = max(a, reach), min(b, end)
    if b > a:
      total += b - a
      reach = b
  return total


def import_seconds(stderr: str, names: tuple[str, ...]) -> float:
  """The cumulative import seconds of the top-level packages `names`, read from the lines of
  `python -X importtime` ("import time: self | cumulative | name", nesting by indentation)."""
  total = 0.0
  for line in stderr.splitlines():
    if line.startswith("import time:") and line.count("|") == 2:
      _, cumulative, name = line.split("|")
      if name.strip() in names and not name[1:].startswith(" "):
        total += int(cumulative) / 1e6
  return total


def child(problem: str, event: str, launch: float, out: str) -> None:
  """Runs the entry point until `event`, then writes the timeline to `out` and exits."""
  entry, args = PROBLEMS[problem]
  sys.path.insert(0, REPO)
  import importlib  # pylint: disable=import-outside-toplevel
  module = importlib.import_module(entry)
  import jax  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from jax import monitoring  # pylint: disable=import-outside-toplevel

  from sam_edge.cli import main as cli  # pylint: disable=import-outside-toplevel
  from sam_edge.run import experiment, outputs  # noqa: F401  pylint: disable=import-outside-toplevel
  timeline = {"launch": launch, "python_start": T0, "imported": time.time(), "spans": []}
  monitoring.register_event_time_span_listener(
      lambda name, start, end, **kw: timeline["spans"].append((start, end))
      if name in COMPILE_EVENTS else None)
  build = module.TASK.build

  def timed_build(f, key):
    timeline["build_start"] = time.time()
    problem_built = build(f, key)
    timeline["build_end"] = time.time()
    return problem_built
  object.__setattr__(module.TASK, "build", timed_build)      # a frozen dataclass's field

  def finish() -> None:
    timeline["end"] = time.time()
    with open(out, "w", encoding="utf-8") as f:
      json.dump(timeline, f)
    sys.stdout.flush()
    os._exit(0)                                       # the event is reached: nothing more to time

  on_loss, on_record = outputs.Writer.on_loss, outputs.Writer.on_record
  outputs.Writer.on_loss = lambda self, *a: finish() if event == "first_step" else on_loss(self, *a)
  outputs.Writer.on_record = (lambda self, r: finish() if "eigenvalues" in r
                              else on_record(self, r))
  code = cli.entry(module.TASK, module.FLAGS, [*args, *NO_OUTPUTS, *EVENTS[event],
                                               "--max_steps=1", *sys.argv[6:]])
  raise SystemExit(f"the run ended (exit code {code}) before its {event}")


def start(problem: str, event: str, cache: str, tfds_dir: str) -> dict:
  """One fresh process until `event`; its timeline (epoch seconds) and import seconds."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "timeline.json")
    extra = [f"--tfds_data_dir={tfds_dir}"] if problem == "mlp" else []
    launch = time.time()
    proc = subprocess.run([sys.executable, "-X", "importtime", __file__, "--child", problem,
                           event, repr(launch), out, f"--compilation_cache_dir={cache}", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS",
                                                                               "cpu")})
    if not os.path.exists(out):
      raise RuntimeError(f"{problem} {event} failed:\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")
    with open(out, encoding="utf-8") as f:
      timeline = json.load(f)
  timeline["tensorflow_import"] = import_seconds(proc.stderr, ("tensorflow",
                                                               "tensorflow_datasets"))
  return timeline


def breakdown(t: dict, rest: str) -> dict:
  """A start's seconds to its event, along its timeline (see the module doc); `rest` names what
  is left after imports, data and compilation: the first step, or the first measurement."""
  end = t["end"]
  compiled = union_seconds(t["spans"], t["launch"], end)
  build = t["build_end"] - t["build_start"]
  compiled_in_build = union_seconds(t["spans"], t["build_start"], t["build_end"])
  imports = t["imported"] - t["launch"]
  data = build - compiled_in_build
  return {"imports": imports, "data": data, "tensorflow_import": t["tensorflow_import"],
          "compilation": compiled, rest: (end - t["launch"]) - imports - data - compiled}


def measure(problem: str, repeats: int, root: str) -> dict:
  """Cold and warm starts of `problem`, alternating, `repeats` times: the least of each."""
  tfds_dir = os.path.join(root, "tfds")
  start(problem, "first_step", os.path.join(root, "prepare"), tfds_dir)   # prepares the data
  seconds = {f"{w}_{e}": [] for w in ("cold", "warm") for e in EVENTS}
  best = {}
  for i in range(repeats):
    for event in EVENTS:
      cache = os.path.join(root, f"{problem}-{event}-{i}")
      for when in ("cold", "warm"):
        t = start(problem, event, cache, tfds_dir)
        s = t["end"] - t["launch"]
        seconds[f"{when}_{event}"].append(s)
        if s == min(seconds[f"{when}_{event}"]):
          best[f"{when}_{event}"] = t
        print(f"  {problem} {when} {event}: {s:.2f} s", flush=True)
      shutil.rmtree(cache)
  result = {k: min(v) for k, v in seconds.items()}
  result["warm_breakdown"] = breakdown(best["warm_first_step"], "first_step")
  for when in ("cold", "warm"):
    result[f"{when}_measurement_breakdown"] = breakdown(best[f"{when}_first_measurement"],
                                                        "measurement")
  for e in EVENTS:
    result[f"speedup_{e}"] = result[f"cold_{e}"] / result[f"warm_{e}"]
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", help="write the figures to this file")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--problems", default=",".join(PROBLEMS))
  a = parser.parse_args()
  results = {}
  with tempfile.TemporaryDirectory() as root:
    for problem in a.problems.split(","):
      results[problem] = measure(problem, a.repeats, root)
  print(f"\nleast of {a.repeats} interleaved starts, seconds from process start")
  print(f"{'problem':12} {'event':18} {'cold':>8} {'warm':>8} {'cold/warm':>10}")
  for problem, r in results.items():
    for e in EVENTS:
      print(f"{problem:12} {e:18} {r[f'cold_{e}']:8.2f} {r[f'warm_{e}']:8.2f} "
            f"{r[f'speedup_{e}']:10.2f}")
  print("\nwhere a start's seconds go (the rest: the first step, or the first measurement)")
  print(f"{'problem':12} {'start':24} {'imports':>8} {'data':>8} {'(of it TF)':>11} "
        f"{'compile':>8} {'rest':>8}")
  for problem, r in results.items():
    for name, key, rest in (("warm, first step", "warm_breakdown", "first_step"),
                            ("cold, first measurement", "cold_measurement_breakdown",
                             "measurement"),
                            ("warm, first measurement", "warm_measurement_breakdown",
                             "measurement")):
      b = r[key]
      print(f"{problem:12} {name:24} {b['imports']:8.2f} {b['data']:8.2f} "
            f"{b['tensorflow_import']:11.2f} {b['compilation']:8.2f} {b[rest]:8.2f}")
  if a.json:
    with open(a.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--child":
    child(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
  else:
    main()
