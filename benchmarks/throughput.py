"""Training throughput: our loop (`run.loop.run_loop`, driven as `run.experiment.run` drives it)
against a bare jitted SAM loop a user would write, for ρ = 0 (one gradient) and ρ = 0.1 (two).

"Ours": the task's Problem built from the entry point's flags, `run.components.components` on
the run's placement (`run.devices.placement`), `optim.update.init_state` and
`curvature.measure.init_state` (replicated on it), then `run.loop.run_loop` with measurements off
(LoopSettings(time_limit_s=1e9, measure_gap_s=None, measure_every_steps=None, max_steps=...)):
a warm-up run_loop of 2 steps (compiles), then each timing is one more run_loop of N steps from
the state reached, wall clock around the call plus a final `block_until_ready`. Each step draws its
batch on device (a permutation gather), and the loop reads every loss back (one step in flight).

"Bare": `jax.jit((params, opt_state, batch) -> (params, opt_state, loss))`, params and opt_state
donated, written here with the same Haiku/Flax model and optax.sgd(η) (not sam_edge.optim):
g = ∇L(w); for ρ > 0, g = ∇L(w + ρ g / (||g|| + 1e-5)) on the same batch; w ← w − η g. Batches
are pre-sliced on device from the same training arrays, `arrays[i*B:(i+1)*B]`, cycling in order;
images stay uint8 and windows uint8 (converted inside the step, as in ours). Losses are never
read back; N steps are timed after 2 warm-up steps, ending with `block_until_ready`.

Single steps (`benchmarks/step_timing.py`, first): --single_steps (20) steps of each of ours,
bare and the reference-shaped update (the reference's jitted update on one fixed batch:
ε = ρ g/(‖g‖ + 1e-5), w ← w − η ∇L(w + ε), plain SGD), the three alternating step by step, each
timed to `block_until_ready`; the least and the median of each. `ours_over_bare` (JSON and
table) = least bare step / least ours step, `ours_over_bare_median` from the medians (throughput
ratios: 1 is parity, above 1 ours is faster); `sam_over_gd_<method>` = least SAM step / least
GD step. Blocks of steps (then): the timings below, `block_ours_over_bare`.

--hlo DIR writes the optimized HLO of ours' and bare's step at ρ > 0 there and prints the opcodes
whose counts differ (in the entry computation and over all computations).

Workloads: `transformer` (the entry point's defaults: 6 layers, 8 heads, key 32, width 128,
sequence 64, batch 128, η = 0.1, on tinyshakespeare with the last 10% held out), `mnist_mlp`
(the quick experiment's model: MLP depth 4, width 100, full-batch MNIST, 60,000 examples,
η = 0.01) and `resnet20` (ResNet-20 with BatchNorm on MNIST, batches of 128 drawn from the
60,000 examples, η = 0.05; the bare step moves the statistics from its unperturbed pass, as ours
does). Every timing is repeated --repeats times (ours and bare alternating) and the best
(least) time is reported. SAM/GD is time per SAM step / time per GD step.

    python benchmarks/throughput.py [--workloads=transformer,mnist_mlp,resnet20] [--steps N]
        [--repeats 2] [--single_steps 20] [--hlo DIR] [--small] [--json PATH]

--small (a smoke run): a 1-layer, width-32 transformer (2 heads of 16, batch 32) and a width-16
MLP on the first 1,000 MNIST training images (full batch).
"""

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks import step_timing  # noqa: E402
from sam_edge.cli import config as cli_config  # noqa: E402
from sam_edge.cli import flags as cli_flags  # noqa: E402
from sam_edge.cli import main as cli  # noqa: E402
from sam_edge.curvature import measure  # noqa: E402
from sam_edge.optim import update  # noqa: E402
from sam_edge.run import components, devices, loop  # noqa: E402
from sam_edge.run.problem import Problem, keys  # noqa: E402

WORKLOADS = ("transformer", "mnist_mlp", "resnet20")
DEFAULT_STEPS = {"transformer": 8, "mnist_mlp": 20, "resnet20": 20}
RHOS = (0.0, 0.1)
WARMUP_STEPS = 2
SAM_NORM_EPS = 1e-5
NO_OUTPUTS = [f"--{o.name}=" for o in cli_flags.output_options()]

SMALL_FLAGS = {
    "transformer": ["--num_layers=1", "--model_size=32", "--num_heads=2", "--key_size=16",
                    "--batch_size=32"],
    "mnist_mlp": ["--mlp_width=16", "--batch_size=1000", "--mini_training_set_num_batches=1",
                  "--mini_test_set_num_batches=1"],
    "resnet20": ["--batch_size=16", "--mini_training_set_num_batches=4",
                 "--mini_test_set_num_batches=1"],
}


def log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def parse_entry_flags(module, argv: list[str]):
  """Fills the entry point's flags in-process (as its `run` does) and checks them."""
  f = module.FLAGS
  cli.parse_flags(f, [module.PROG] + argv + NO_OUTPUTS)
  return f


# --- the workloads: the entry points' problems, and the bare loss written by hand -------------


@dataclasses.dataclass
class Workload:
  name: str
  flags: object           # the entry point's parsed FlagValues
  module: object          # the entry point module (for re-parsing with --rho)
  argv: list              # its flags, without --rho
  problem: Problem
  bare_loss: object       # (params, batch, state) -> (mean loss, new state), written here
  bare_state: object = dataclasses.field(default_factory=dict)   # BatchNorm statistics, or {}


def build_transformer(args) -> Workload:
  import transformer as entry
  from sam_edge.models import transformer as tm
  from sam_edge.tasks import text_problem, text_task
  argv = [f"--training_data={args.corpus}"] + (SMALL_FLAGS["transformer"] if args.small else [])
  f = parse_entry_flags(entry, argv)
  found = entry.problems(f)
  if found:
    sys.exit("\n".join(f"throughput: transformer: {p}" for p in found))
  windows = text_task.load_windows(cli_config.flag_values(f), log=lambda s: None)
  with contextlib.redirect_stdout(sys.stderr):
    problem = text_problem.build(entry.TASK.config(cli_config.flag_values(f)),
                                 keys(f.seed)["init"], windows)
  lm = tm.make_language_model(num_layers=f.num_layers, num_heads=f.num_heads,
                              key_size=f.key_size, model_size=f.model_size,
                              sequence_length=f.sequence_length)

  def bare_loss(params, window, state):             # window: uint8 [B, T+1]
    tokens = window.astype(jnp.int32)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = lm.apply(params, inputs).astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    mask = (targets != 0).astype(jnp.float32)
    return jnp.sum(mask * ce) / jnp.maximum(jnp.sum(mask), 1.0), state
  return Workload("transformer", f, entry, argv, problem, bare_loss)


def image_workload(args, name: str, own: list[str]):
  """(flags, entry module, argv, Problem, the training images' mean pixel / 256) of an MNIST
  workload whose own flags are `own`."""
  import image_classification as entry
  from sam_edge.tasks import image_problem
  os.makedirs(args.tfds_data_dir, exist_ok=True)
  argv = ["--dataset=mnist", *own, f"--manual_dir={args.manual_dir}",
          f"--tfds_data_dir={args.tfds_data_dir}"] + (SMALL_FLAGS[name] if args.small else [])
  f = parse_entry_flags(entry, argv)
  found = entry.problems(f)
  if found:
    sys.exit("\n".join(f"throughput: {name}: {p}" for p in found))
  with contextlib.redirect_stdout(sys.stderr):
    problem = image_problem.build(entry.TASK.config(cli_config.flag_values(f)),
                                  keys(f.seed)["init"])
  images = np.asarray(problem.train_arrays["image"])
  mean = jnp.asarray((images.mean(axis=0, dtype=np.float64) / 256).astype(np.float32))
  return f, entry, argv, problem, mean


def squared_error(logits, label):
  """The reference's loss: the mean over all entries of (logits − onehot)²."""
  onehot = jax.nn.one_hot(label, logits.shape[-1], dtype=logits.dtype)
  return jnp.mean((logits - onehot) ** 2)


def build_mnist_mlp(args) -> Workload:
  from sam_edge.models import vision as vm
  f, entry, argv, problem, mean = image_workload(args, "mnist_mlp", [
      "--nn_architecture=MLP", "--mlp_depth=4", "--mlp_width=100", "--batch_size=60000",
      "--step_size=0.01"])
  model = vm.MLP(depth=f.mlp_depth, width=f.mlp_width, num_classes=10)

  def bare_loss(params, batch, state):              # image uint8 [B, 28, 28, 1], label int32 [B]
    image, label = batch
    return squared_error(model.apply(params, image.astype(jnp.float32) / 256 - mean), label), state
  return Workload("mnist_mlp", f, entry, argv, problem, bare_loss)


def build_resnet20(args) -> Workload:
  """ResNet-20 (BatchNorm) on MNIST, a batch of 128: the bare loss runs the network in train
  mode and returns the batch's statistics, moved once per step from the unperturbed pass (as
  ours moves them)."""
  from sam_edge.models import registry, stateful
  f, entry, argv, problem, mean = image_workload(args, "resnet20", [
      "--nn_architecture=ResNet20", "--batch_size=128", "--step_size=0.05"])
  model = registry.build("ResNet20", num_classes=10, activation=f.activation)
  forward = stateful.train_forward(model, lambda image: image.astype(jnp.float32) / 256 - mean)

  def bare_loss(params, batch, state):
    image, label = batch
    logits, stats = forward(params, state["batch_stats"], image)
    return squared_error(logits, label), {"batch_stats": stats}
  return Workload("resnet20", f, entry, argv, problem, bare_loss, problem.model_state)


BUILDERS = {"transformer": build_transformer, "mnist_mlp": build_mnist_mlp,
            "resnet20": build_resnet20}


def copy_tree(tree):
  """Fresh buffers (the updates donate theirs)."""
  return jax.tree.map(jnp.copy, tree)


# --- our loop ---------------------------------------------------------------------------------


class OursTimer:
  """`run.experiment.run`'s set-up for one ρ; `run(n)` runs one more run_loop of n steps."""

  def __init__(self, w: Workload, rho: float):
    f = parse_entry_flags(w.module, w.argv + [f"--rho={rho}"])
    settings = cli_config.of_flags(w.module.TASK, f).run
    self.settings = dataclasses.replace(settings, loop=loop.LoopSettings(
        time_limit_s=1e9, measure_gap_s=None, measure_every_steps=None, max_steps=None))
    run_keys = keys(self.settings.seed)
    place = devices.placement(self.settings.num_devices)
    self.state = place.replicate(update.init_state(
        copy_tree(w.problem.params), self.settings.method.optimizer.make(), w.problem.model_state))
    self.measure_state = place.replicate(measure.init_state(self.settings.measure,
                                                            w.problem.params))
    self.parts = components.components(w.problem, self.settings, run_keys, place)
    self.problem, self.place = w.problem, place
    self.run(WARMUP_STEPS)                            # compiles the update

  def compiled_text(self) -> str:
    """The optimized HLO of the training step, as the run compiles it."""
    order = components.batch_order(self.problem, self.settings.batch_size)
    step = int(self.state.step)
    train = components.train_steps(self.problem, self.settings, order, self.place)(step)
    return train.lower(self.state, self.measure_state, self.parts.train_arrays,
                       self.parts.data_key,
                       components.host_indices(order, step, self.parts.data_key),
                       self.place.replicate(self.problem.constants)).compile().as_text()

  def run(self, n: int) -> float:
    start_step = int(self.state.step)
    settings = dataclasses.replace(self.settings.loop, max_steps=start_step + n)
    gc.collect()
    start = time.perf_counter()
    self.state, self.measure_state, reason = loop.run_loop(
        self.parts, self.state, self.measure_state, loop.Progress(), settings, loop.StopFlag(),
        loop.Hooks(log=lambda s: None))
    jax.block_until_ready(self.state)
    seconds = time.perf_counter() - start
    if reason != "max_steps" or int(self.state.step) != start_step + n:
      raise RuntimeError(f"our loop stopped ({reason}) at step {int(self.state.step)}, "
                         f"not after {n} steps from {start_step}")
    return seconds


# --- the bare loop ----------------------------------------------------------------------------


def make_bare_step(loss_fn, step_size: float, rho: float):
  """The minimal jitted SAM (ρ > 0) or GD (ρ = 0) step, `(params, opt_state, state, batch) ->
  (params, opt_state, state, loss)`; the model state (BatchNorm statistics, or {}) from the
  unperturbed pass; params, opt_state and state donated."""
  optimizer = optax.sgd(step_size)

  def step(params, opt_state, state, batch):
    (loss, new_state), grad = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, state)
    if rho > 0:
      scale = rho / (optax.global_norm(grad) + SAM_NORM_EPS)
      perturbed = jax.tree.map(lambda p, g: p + scale * g, params, grad)
      grad, _ = jax.grad(loss_fn, has_aux=True)(perturbed, batch, state)
    updates, opt_state = optimizer.update(grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_state, loss
  return optimizer, jax.jit(step, donate_argnums=(0, 1, 2))


class BareTimer:
  def __init__(self, w: Workload, rho: float, num_batches: int):
    arrays = w.problem.train_arrays
    size = w.flags.batch_size
    n = int(next(iter(arrays.values())).shape[0])
    if w.name == "transformer":
      data = arrays["window"]
    else:
      data = (arrays["image"], arrays["label"])
    count = max(1, min(n // size, num_batches))
    self.batches = [jax.device_put(jax.tree.map(lambda a, i=i: a[i * size:(i + 1) * size], data))
                    for i in range(count)]
    jax.block_until_ready(self.batches)
    optimizer, self.step = make_bare_step(w.bare_loss, w.flags.step_size, rho)
    self.params = copy_tree(w.problem.params)
    self.opt_state = optimizer.init(self.params)
    self.state = copy_tree(w.bare_state)
    self.i = 0
    self.run(WARMUP_STEPS)

  def run(self, n: int) -> float:
    params, opt_state, state, batches, i = (self.params, self.opt_state, self.state,
                                            self.batches, self.i)
    self.params = self.opt_state = self.state = None
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
      params, opt_state, state, loss = self.step(params, opt_state, state,
                                                 batches[i % len(batches)])
      i += 1
    jax.block_until_ready((params, opt_state, state, loss))
    seconds = time.perf_counter() - start
    if not np.isfinite(float(loss)):
      raise RuntimeError(f"the bare loop diverged (loss {float(loss)})")
    self.params, self.opt_state, self.state, self.i = params, opt_state, state, i
    return seconds


# --- driver -----------------------------------------------------------------------------------


def benchmark(w: Workload, rhos, num_steps: int, repeats: int, single: int,
              hlo: str = "") -> list[dict]:
  """Per ρ: `single` single steps of ours, bare and the reference-shaped update, alternating step
  by step (`step_timing`), then `repeats` blocks of `num_steps` steps of ours and bare."""
  rows = []
  for rho in rhos:
    log(f"{w.name} ρ={rho:g}: compiling ours, bare and the reference-shaped update ...")
    ours = OursTimer(w, rho)
    bare = BareTimer(w, rho, WARMUP_STEPS + repeats * num_steps)
    reference = step_timing.reference_update(w.bare_loss, w.flags.step_size, rho, SAM_NORM_EPS)
    steppers = {"ours": step_timing.ours_stepper(ours), "bare": step_timing.bare_stepper(bare),
                "reference": step_timing.reference_stepper(
                    reference, copy_tree(w.problem.params), copy_tree(w.bare_state),
                    bare.batches[0])}
    if hlo and rho > 0:
      texts = {"ours": ours.compiled_text(),
               "bare": bare.step.lower(bare.params, bare.opt_state, bare.state,
                                       bare.batches[0]).compile().as_text()}
      for method, text in texts.items():
        pathlib.Path(hlo, f"{w.name}_rho{rho:g}_{method}.hlo.txt").write_text(text)
      print(f"{w.name} ρ={rho:g}: optimized HLO, ours against bare (opcodes whose counts "
            "differ)\n" + "\n".join(step_timing.compare_hlo(texts["ours"], texts["bare"])))
    seconds = step_timing.interleaved(steppers, single)
    row = {"workload": w.name, "rho": rho, "single_steps": single,
           **step_timing.summary(seconds), "step_seconds": seconds}
    log(f"{w.name} ρ={rho:g}: least step ours {row['ours_least_s']:.4f}s, bare "
        f"{row['bare_least_s']:.4f}s, reference {row['reference_least_s']:.4f}s")
    del steppers
    ours_s, bare_s = [], []
    for r in range(repeats):
      ours_s.append(ours.run(num_steps))
      bare_s.append(bare.run(num_steps))
      log(f"{w.name} ρ={rho:g} repeat {r + 1}/{repeats}: ours {ours_s[-1]:.3f}s, "
          f"bare {bare_s[-1]:.3f}s for {num_steps} steps")
    best_ours, best_bare = min(ours_s), min(bare_s)
    row.update({
        "steps": num_steps, "repeats": repeats, "ours_seconds": ours_s, "bare_seconds": bare_s,
        "ours_steps_per_s": num_steps / best_ours, "bare_steps_per_s": num_steps / best_bare,
        "block_ours_over_bare": best_bare / best_ours,      # throughput ratio, whole blocks
    })
    rows.append(row)
    del ours, bare
  gd = next((r for r in rows if r["rho"] == 0), None)
  for r in rows:
    if gd is not None and r["rho"] > 0:
      for method in step_timing.METHODS:     # time per SAM step / time per GD step, least
        r[f"sam_over_gd_{method}"] = r[f"{method}_least_s"] / gd[f"{method}_least_s"]
  return rows


def print_table(rows: list[dict]) -> None:
  print("single steps, alternating (seconds per step: least / median)")
  print(f"{'workload':<12}{'rho':>5}{'ours':>18}{'bare':>18}{'reference':>18}{'ours/bare':>10}"
        f"{'(median)':>9}{'SAM/GD ours':>12}{'bare':>6}{'ref.':>6}")
  for r in rows:
    pair = lambda m: f"{r[m + '_least_s']:.4f} / {r[m + '_median_s']:.4f}"  # noqa: E731
    sam = (f"{r['sam_over_gd_ours']:>12.2f}{r['sam_over_gd_bare']:>6.2f}"
           f"{r['sam_over_gd_reference']:>6.2f}" if "sam_over_gd_ours" in r
           else f"{'-':>12}{'-':>6}{'-':>6}")
    print(f"{r['workload']:<12}{r['rho']:>5g}{pair('ours'):>18}{pair('bare'):>18}"
          f"{pair('reference'):>18}{r['ours_over_bare']:>10.3f}"
          f"{r['ours_over_bare_median']:>9.3f}{sam}")
  print("\nblocks of steps (best of the repeats)")
  print(f"{'workload':<12}{'rho':>5}{'steps':>7}{'ours steps/s':>14}{'bare steps/s':>14}"
        f"{'ours/bare':>11}")
  for r in rows:
    print(f"{r['workload']:<12}{r['rho']:>5g}{r['steps']:>7}{r['ours_steps_per_s']:>14.4g}"
          f"{r['bare_steps_per_s']:>14.4g}{r['block_ours_over_bare']:>11.3f}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workloads", default=",".join(WORKLOADS),
                      help=f"comma-separated subset of {','.join(WORKLOADS)}")
  parser.add_argument("--steps", type=int, default=None,
                      help="steps per timing (default: " + ", ".join(
                          f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
  parser.add_argument("--repeats", type=int, default=2,
                      help="timings per (workload, rho); the best is reported")
  parser.add_argument("--single_steps", type=int, default=20,
                      help="single steps timed per method and ρ, the methods alternating")
  parser.add_argument("--hlo", default="",
                      help="a folder: write the optimized HLO of ours and bare at ρ > 0 there "
                      "and print the opcodes whose counts differ")
  parser.add_argument("--corpus", default=str(REPO.parent / "shared/data/tinyshakespeare.txt"))
  parser.add_argument("--manual_dir", default=str(REPO.parent / "shared/data/mnist"))
  parser.add_argument("--tfds_data_dir", default="/tmp/sam_edge_tfds",
                      help="TFDS folder (MNIST is prepared there once and reused)")
  parser.add_argument("--small", action="store_true",
                      help="tiny models and a mini MNIST training set (smoke run)")
  parser.add_argument("--json", help="also write the figures to this JSON file")
  args = parser.parse_args()
  names = [n.strip() for n in args.workloads.split(",") if n.strip()]
  unknown = [n for n in names if n not in WORKLOADS]
  if unknown or not names:
    parser.error(f"--workloads: unknown {unknown}; choose from {','.join(WORKLOADS)}")
  if (args.steps is not None and args.steps < 1) or args.repeats < 1 or args.single_steps < 1:
    parser.error("--steps, --repeats and --single_steps must be at least 1")

  if args.hlo:
    os.makedirs(args.hlo, exist_ok=True)
  rows, described = [], {}
  for name in names:
    w = BUILDERS[name](args)
    described[name] = {"description": w.problem.description,
                       "flags": {k: w.flags[k].value for k in (
                           "batch_size", "step_size", "num_layers", "num_heads", "key_size",
                           "model_size", "sequence_length", "mlp_depth", "mlp_width",
                           "mini_training_set_num_batches") if k in w.flags}}
    rows += benchmark(w, RHOS, args.steps or DEFAULT_STEPS[name], args.repeats,
                      args.single_steps, args.hlo)
    del w
  print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind} "
        f"({jax.default_backend()}); best of {args.repeats}; ours/bare = throughput ratio; "
        f"SAM/GD = time per SAM step / time per GD step" + (" [--small]" if args.small else ""))
  print_table(rows)
  if args.json:
    out = {"jax": jax.__version__, "backend": jax.default_backend(),
           "device": jax.devices()[0].device_kind, "small": args.small,
           "warmup_steps": WARMUP_STEPS, "workloads": described, "results": rows}
    pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
  main()
