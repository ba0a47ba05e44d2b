"""Renders the figure gallery, docs/gallery/<kind>.png: one PNG of each kind of figure sam-edge
draws, from small runs (3 to 7 minutes on two CPU cores, by their load). docs/gallery.md shows
them.

    python docs/make_gallery.py [--manual_dir=../shared/data/mnist] [--out=docs/gallery] \\
        [--work_dir=DIR] [--dpi=100] [--stages=sweep,compare,run,landscape,central_flow,power_law]

Each stage is one command of the tool, with the flags a user would type (printed in full, as a
`python -m ...` line, before it starts), writing into a temporary folder (`--work_dir`: that
folder instead, kept):

  sweep         python -m sam_edge.sweep: 2 widths × 3 values of ρ × 2 seeds of a small SAM run,
                in a child process (whose own runs are child processes in turn)
  compare       python -m sam_edge.compare on the sweep's folder, with a phase plot
  run           python -m image_classification: SAM on 1,000 MNIST images measuring the top 3
                eigenvalues, the curvature kinds beyond λ1 that draw, the test metrics and λ1 at
                every step: every figure a run writes
  landscape     python -m sam_edge.landscape around the run's final parameters
  central_flow  python -m sam_edge.central_flow on a small tanh MLP that reaches 2/η
  power_law     python -m sam_edge.power_law on synthetic power-law data

All but the sweep run in this process (`main(argv)` of the command's module), and while they run
`sam_edge.plots.figure.write` is wrapped: each figure the tool writes (its PDF, as always) is also
kept as the matplotlib Figure the tool built, and the one of each kind in `KINDS` is saved as a
PNG (`--dpi`, quantised to 256 colours) into `--out`. Nothing of the package changes.

MNIST is read from `--manual_dir`, a folder with MNIST's four IDX files (by default
../shared/data/mnist beside the repository, where `run.sh` looks, when it exists); with
`--manual_dir=` TFDS downloads it. The power-law stage needs no data.
"""

import argparse
import contextlib
import dataclasses
import importlib
import io
import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "docs", "gallery")
DEFAULT_MANUAL_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")
DPI = 100


@dataclasses.dataclass(frozen=True)
class Kind:
  """One kind of figure: its PNG (`<out>/<name>.png`), the stage that draws it, the tool's name
  for it (a run's output flag, or the PDF a command writes; `<axis>` for a name per axis), and
  the PDF of the stage's folder it is drawn from."""
  name: str
  stage: str
  output: str
  pdf: str


def _run_kind(flag: str) -> Kind:
  """A figure a run writes: named after its output flag, drawn from `<flag stem>.pdf`."""
  name = flag.removesuffix("_output")
  return Kind(name, "run", flag, f"{name}.pdf")


KINDS: tuple[Kind, ...] = (
    _run_kind("eigs_curve_output"),
    _run_kind("eigs_se_only_output"),
    _run_kind("alignment_curve_output"),
    _run_kind("loss_curve_output"),
    _run_kind("eval_curve_output"),
    _run_kind("tracking_curve_output"),
    _run_kind("curvature_output"),
    _run_kind("density_output"),
    Kind("lambda1_over_edge", "compare", "lambda1_over_edge.pdf", "lambda1_over_edge.pdf"),
    Kind("loss_curves", "compare", "loss_curves.pdf", "loss_curves.pdf"),
    Kind("metric_vs_axis", "compare", "metric_vs_<axis>.pdf", "metric_vs_rho.pdf"),
    Kind("phase", "compare", "phase.pdf", "phase.pdf"),
    Kind("landscape", "landscape", "landscape.pdf", "landscape.pdf"),
    Kind("central_flow", "central_flow", "central_flow.pdf", "central_flow.pdf"),
    Kind("power_law_curves", "power_law", "curves.pdf", "curves.pdf"),
    Kind("power_law_spectrum", "power_law", "spectrum.pdf", "spectrum.pdf"),
    Kind("power_law_stability", "power_law", "stability.pdf", "stability.pdf"),
    Kind("power_law_budget", "power_law", "budget.pdf", "budget.pdf"),
)
STAGES = ("sweep", "compare", "run", "landscape", "central_flow", "power_law")


def _data_flags(manual_dir: Optional[str]) -> list[str]:
  """--manual_dir, unless TFDS is to download the data."""
  return [f"--manual_dir={manual_dir}"] if manual_dir else []


def run_argv(work: str, manual_dir: Optional[str]) -> list[str]:
  """image_classification's flags: the first run's SAM (ρ = 0.05, η = 1, an MLP of three layers
  of width 100, full batch) on 1,000 images for 150 steps, measuring every 10 steps the top 3
  eigenvalues with the trace, the density, per-layer sharpness, λ_min, λ1 of the Gauss–Newton
  matrix and self-stabilisation, the test metrics every 10 steps and λ1 at every step; each
  figure into `<work>/run/<kind name>.pdf`, and the final parameters for the landscape."""
  folder = os.path.join(work, "run")
  outputs = [f"--{k.output}={os.path.join(folder, k.pdf)}" for k in KINDS if k.stage == "run"]
  return [
      "--rho=0.05", "--step_size=1.0", "--mlp_depth=3", "--mlp_width=100", "--batch_size=1000",
      "--mini_training_set_num_batches=1", "--mini_test_set_num_batches=1", "--max_steps=150",
      "--measure_every_steps=10", "--num_principal_components=3", "--lanczos_max_steps=40",
      "--eval_every_steps=10", "--track_every_step", "--measure_trace", "--trace_probes=30",
      "--measure_density", "--density_probes=2", "--density_steps=40", "--measure_per_layer",
      "--measure_min_eigenvalue", "--measure_gauss_newton", "--measure_self_stabilization",
      *_data_flags(manual_dir), *outputs,
      f"--raw_data_output={os.path.join(folder, 'raw.pkl')}",
      f"--params_output={os.path.join(folder, 'params.npz')}"]


SWEEP_AXES = "rho,mlp_width"          # compare's phase axes: ρ to the right, width downwards


def sweep_argv(work: str, manual_dir: Optional[str]) -> list[str]:
  """sam_edge.sweep's arguments: 2 widths × 3 values of ρ × 2 seeds (SAM, η = 0.5, 500 images,
  100 steps, λ1 every 10 steps) into `<work>/sweep`."""
  return [
      f"--out={os.path.join(work, 'sweep')}", f"--phase_axes={SWEEP_AXES}", "--",
      "image_classification", "--mlp_width=16,64", "--rho=0.02,0.1,0.5", "--seed=0,1",
      "--step_size=0.5",
      "--mlp_depth=3", "--batch_size=500", "--mini_training_set_num_batches=1",
      "--mini_test_set_num_batches=1", "--max_steps=100", "--measure_every_steps=10",
      "--lanczos_max_steps=20", *_data_flags(manual_dir)]


def compare_argv(work: str, manual_dir: Optional[str]) -> list[str]:
  """sam_edge.compare's arguments: the sweep's runs, with a phase plot over ρ and width and the
  seeds' min–max bars (two seeds: a 95% t-interval would be 12.7 · s/√2 wide), into
  `<work>/compare` (the sweep wrote the same figures into its own folder, in its process)."""
  del manual_dir
  return [os.path.join(work, "sweep"), f"--out={os.path.join(work, 'compare')}",
          f"--phase_axes={SWEEP_AXES}", "--error_bars=minmax"]


def landscape_argv(work: str, manual_dir: Optional[str]) -> list[str]:
  """sam_edge.landscape's arguments: random filter-normalised directions around the run's final
  parameters, a 21 × 21 grid over its 1,000 training images."""
  return [os.path.join(work, "run"), f"--out={os.path.join(work, 'landscape')}", "--grid=21",
          "--examples=1000", *_data_flags(manual_dir)]


def central_flow_argv(work: str, manual_dir: Optional[str]) -> list[str]:
  """sam_edge.central_flow's arguments: README's tanh MLP, smaller (width 32, 500 images), at
  η = 1.5, where GD's λ1 rises to 2/η by progressive sharpening after about 100 steps."""
  return [
      f"--out={os.path.join(work, 'central_flow')}", "--activation=tanh", "--mlp_depth=4",
      "--mlp_width=32", "--batch_size=500", "--mini_training_set_num_batches=1",
      "--mini_test_set_num_batches=1", "--step_size=1.5", "--max_steps=250", "--lanczos_tol=1e-3",
      *_data_flags(manual_dir)]


def power_law_argv(work: str, manual_dir: Optional[str]) -> list[str]:
  """sam_edge.power_law's arguments: synthetic data (ν = 1.5, κ = 3, N = 300), the sampled
  linearised model and SD (τ = 1) over 2 batch sizes × 4 step sizes × 5 momenta, 2,000 steps."""
  del manual_dir
  return [
      f"--out={os.path.join(work, 'power_law')}", "--data=synthetic", "--num_examples=300",
      "--regimes=linearized,spectral_diagonal", "--tau=1", "--batch_sizes=1,10",
      "--step_sizes=0.2,0.4,0.8,1.6", "--momenta=-0.5,-0.25,0,0.25,0.5", "--steps=2000",
      "--seeds=2"]


def _run_image_classification(argv: list[str]) -> int:
  """`python -m image_classification argv`, with flags of its own (`cli.task_flags`)."""
  from sam_edge.cli import main as cli  # pylint: disable=import-outside-toplevel
  from sam_edge.tasks.image_task import TASK  # pylint: disable=import-outside-toplevel
  return cli.entry(TASK, cli.task_flags(TASK), argv)


def _command_main(module: str) -> Callable[[list[str]], int]:
  """A command module's `main(argv)`, imported when it runs."""
  def main(argv: list[str]) -> int:
    return importlib.import_module(module).main(argv)
  return main


def _child_process(module: str) -> Callable[[list[str]], int]:
  """`python -m module argv` in a child process of this Python, in the repository."""
  def main(argv: list[str]) -> int:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, check=False).returncode
  return main


@dataclasses.dataclass(frozen=True)
class Stage:
  """A command of the tool: what a user types (`program`), its arguments for a work folder and
  a data folder, and how it runs here (`main(argv)`, the exit code)."""
  program: str
  arguments: Callable[[str, Optional[str]], list[str]]
  main: Callable[[list[str]], int]


STAGE_COMMANDS: dict[str, Stage] = {
    "run": Stage("image_classification", run_argv, _run_image_classification),
    "sweep": Stage("sam_edge.sweep", sweep_argv, _child_process("sam_edge.sweep")),
    "compare": Stage("sam_edge.compare", compare_argv, _command_main("sam_edge.compare")),
    "landscape": Stage("sam_edge.landscape", landscape_argv, _command_main("sam_edge.landscape")),
    "central_flow": Stage("sam_edge.central_flow", central_flow_argv,
                          _command_main("sam_edge.central_flow")),
    "power_law": Stage("sam_edge.power_law", power_law_argv, _command_main("sam_edge.power_law")),
}


class Capture:
  """The Figure of every PDF the tool writes while `installed()`, by absolute path (the last
  write of a path wins)."""

  def __init__(self) -> None:
    self.figures: dict[str, Any] = {}

  @contextlib.contextmanager
  def installed(self) -> Iterator["Capture"]:
    """`sam_edge.plots.figure.write` wrapped to keep each figure it builds and writes."""
    from sam_edge.plots import figure  # pylint: disable=import-outside-toplevel
    original = figure.write

    def write(path: str, panels: Sequence[Any], **kwargs: Any) -> Any:
      fig = original(path, panels, **kwargs)
      self.figures[os.path.abspath(path)] = fig
      return fig

    figure.write = write
    try:
      yield self
    finally:
      figure.write = original


def save_png(fig: Any, path: str, dpi: int) -> int:
  """Saves `fig` as a PNG at `path`, quantised to 256 colours (a third of the bytes; a line
  drawing loses nothing visible), without metadata; returns its size in bytes."""
  from PIL import Image  # pylint: disable=import-outside-toplevel  (matplotlib's dependency)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi)
  buffer.seek(0)
  with Image.open(buffer) as image:
    palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE)
  palette.save(path, format="png", optimize=True)
  return os.path.getsize(path)


def typed(stage: Stage, argv: list[str]) -> str:
  """The command line a user would type for `stage` with `argv`."""
  return shlex.join(["python", "-m", stage.program, *argv])


def run_stage(name: str, work: str, manual_dir: Optional[str], capture: Capture) -> float:
  """Runs one stage with the figures captured; returns its seconds. Exits when it fails."""
  stage = STAGE_COMMANDS[name]
  argv = stage.arguments(work, manual_dir)
  print(f"\n== {name}: {typed(stage, argv)}", flush=True)
  os.makedirs(os.path.join(work, name), exist_ok=True)
  start = time.perf_counter()
  with capture.installed():
    code = stage.main(argv)
  seconds = time.perf_counter() - start
  if code != 0:
    sys.exit(f"make_gallery: {name} failed with exit code {code}")
  print(f"== {name}: {seconds:.0f} s", flush=True)
  return seconds


def render(kinds: Sequence[Kind], work: str, out: str, capture: Capture, dpi: int
           ) -> dict[str, int]:
  """Saves the PNG of each kind into `out`; returns {name: bytes}. Exits naming the kinds whose
  PDF was not written."""
  figures = {k.name: capture.figures.get(os.path.join(work, k.stage, k.pdf)) for k in kinds}
  missing = [name for name, fig in figures.items() if fig is None]
  if missing:
    sys.exit(f"make_gallery: no figure written for {', '.join(missing)}")
  os.makedirs(out, exist_ok=True)
  return {name: save_png(fig, os.path.join(out, f"{name}.png"), dpi)
          for name, fig in figures.items()}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  """The script's options (a bad one: a usage line and exit code 2)."""
  parser = argparse.ArgumentParser(
      description="Draws docs/gallery/<kind>.png, one PNG of each kind of figure sam-edge draws, "
      "from small runs (see docs/gallery.md).")
  parser.add_argument("--manual_dir", default=DEFAULT_MANUAL_DIR if os.path.isdir(
      DEFAULT_MANUAL_DIR) else "", help="Folder with MNIST's four IDX files (default: "
      f"{DEFAULT_MANUAL_DIR} when it exists; empty: TFDS downloads MNIST).")
  parser.add_argument("--out", default=DEFAULT_OUT, help="Folder for the PNGs (default: "
                      "docs/gallery).")
  parser.add_argument("--work_dir", default=None, help="Folder for the runs' outputs, kept "
                      "(default: a temporary folder, deleted).")
  parser.add_argument("--dpi", type=int, default=DPI, help=f"Resolution of the PNGs ({DPI}).")
  parser.add_argument("--stages", default=",".join(STAGES), help="The stages to run, of "
                      f"{','.join(STAGES)} (the landscape needs the run's folder in --work_dir).")
  args = parser.parse_args(argv)
  unknown = [s for s in args.stages.split(",") if s and s not in STAGES]
  if unknown:
    parser.error(f"--stages: unknown {', '.join(unknown)}")
  return args


def main(argv: Optional[list[str]] = None) -> int:
  """Runs the stages and writes their PNGs; prints each PNG's size and the total time."""
  args = parse_args(argv)
  stages = args.stages.split(",")
  manual_dir = os.path.abspath(args.manual_dir) if args.manual_dir else None
  out = os.path.abspath(args.out)
  kept = os.path.abspath(args.work_dir) if args.work_dir else None
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  os.chdir(REPO)                  # where `python -m image_classification` finds its module
  start = time.perf_counter()
  capture = Capture()
  with contextlib.ExitStack() as stack:
    work = kept or stack.enter_context(tempfile.TemporaryDirectory(prefix="gallery_"))
    times = {s: run_stage(s, work, manual_dir, capture) for s in STAGES if s in stages}
    sizes = render([k for k in KINDS if k.stage in stages], work, out, capture, args.dpi)
  for name, size in sizes.items():
    print(f"{os.path.join(out, name)}.png  {size / 1024:.0f} KiB")
  print(f"{len(sizes)} PNGs, {sum(sizes.values()) / 1024:.0f} KiB in all; stages "
        + ", ".join(f"{s} {t:.0f} s" for s, t in times.items())
        + f"; {time.perf_counter() - start:.0f} s in all")
  return 0


if __name__ == "__main__":
  sys.exit(main())
