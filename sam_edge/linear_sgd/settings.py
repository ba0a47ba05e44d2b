"""The command line of `python -m sam_edge.power_law`: its flags, their checks (one line each,
before anything is computed) and the settings they give. No jax here: `--help` stays fast.
"""

import dataclasses
import itertools
import math
import os
from typing import Any, Callable, Optional

from absl import flags

from sam_edge import errors, records
from sam_edge.data import idx, image_specs
from sam_edge.linear_sgd import inputs

REGIMES = ("network", "linearized", "averaged", "spectral_diagonal")
DATA = ("synthetic", "mnist", "cifar10", "csv")
AGGREGATES = ("product", "zip")
DEFAULT_SUBSET = {"mnist": "stratified", "cifar10": "stratified", "csv": "random"}
ONLY_FOR = {"csv_path": ("csv",), "target_column": ("csv",), "feature_columns": ("csv",),
            "tfds_data_dir": ("cifar10",), "subset": tuple(DEFAULT_SUBSET)}


@dataclasses.dataclass(frozen=True)
class Settings:
  """The study: data, regimes (in REGIMES order) and the grid. With `aggregate` "product" the
  batch sizes, step sizes and momenta are sorted, without repeats, and every combination runs;
  with "zip" they are as long as each other and the i-th of each make run i."""
  out: str
  data: str = "synthetic"
  manual_dir: Optional[str] = None
  tfds_data_dir: Optional[str] = None
  csv_path: Optional[str] = None
  target_column: tuple[str, ...] = ()
  feature_columns: Optional[tuple[str, ...]] = None
  subset: Optional[str] = None
  num_examples: int = 1000
  nu: float = 1.5
  kappa: float = 3.0
  regimes: tuple[str, ...] = ("linearized", "spectral_diagonal")
  batch_sizes: tuple[int, ...] = (10,)
  step_sizes: tuple[float, ...] = (1.0,)
  momenta: tuple[float, ...] = (0.0,)
  taus: tuple[float, ...] = (1.0, -1.0)
  steps: int = 10000
  seeds: int = 3
  seed: int = 0
  hidden_width: int = 1000
  max_averaged_examples: int = 2000
  aggregate: str = "product"

  @property
  def configs(self) -> tuple[tuple[int, float, float], ...]:
    """Every (b, α, β) run, in order, each once."""
    lists = (self.batch_sizes, self.step_sizes, self.momenta)
    runs = itertools.product(*lists) if self.aggregate == "product" else zip(*lists)
    return tuple(dict.fromkeys(runs))


def define_flags(fv: flags.FlagValues) -> None:
  """The command's flags on `fv`, with the defaults of `Settings`."""
  on = {"flag_values": fv}
  d = Settings(out="")
  flags.DEFINE_string("out", None, "Folder for curves.pdf, spectrum.pdf, stability.pdf, "
                      "budget.pdf, curves.npz, spectrum.npz and results.json (created if "
                      "missing).", **on)
  flags.DEFINE_enum("data", d.data, list(DATA), "synthetic: exact power laws λ_k = k^-ν, "
                    "C_k(0) ∝ k^(-κ-1); mnist, cifar10: --num_examples training images (see "
                    "--subset) with their class index as a standardised scalar target; csv: "
                    "the rows of --csv_path, features and target standardised column by "
                    "column.", **on)
  flags.DEFINE_string("manual_dir", None, "With --data=mnist: the folder holding MNIST's IDX "
                      "files train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz. With "
                      "--data=cifar10: a folder holding cifar-10-binary.tar.gz, from which TFDS "
                      "prepares CIFAR-10 once (offline).", **on)
  flags.DEFINE_string("tfds_data_dir", None, "With --data=cifar10: where TFDS keeps prepared "
                      "datasets (its default if unset).", **on)
  flags.DEFINE_string("csv_path", None, "With --data=csv: the CSV file (UTF-8, a header row "
                      "naming the columns).", **on)
  flags.DEFINE_list("target_column", [], "With --data=csv: the target's column, or several "
                    "whose mean is the target (SGEMM: its four Run columns).", **on)
  flags.DEFINE_list("feature_columns", None, "With --data=csv: the feature columns. Default: "
                    "those the paper's code keeps for Bike-Sharing (hour.csv, day.csv) and "
                    "SGEMM, else every numeric column but the target.", **on)
  flags.DEFINE_enum("subset", None, list(inputs.SUBSETS), "Which --num_examples examples, "
                    "fixed by --seed: stratified (by class; the default for mnist and cifar10), "
                    "random (the default for csv) or first.", **on)
  flags.DEFINE_integer("num_examples", d.num_examples, "N, the number of training points.", **on)
  flags.DEFINE_float("nu", d.nu, "Synthetic data: λ_k = k^-ν.", **on)
  flags.DEFINE_float("kappa", d.kappa, "Synthetic data: tail sums Σ_{l>k} C_l(0) ∝ k^-κ.", **on)
  flags.DEFINE_list("regimes", list(d.regimes), f"Any of {','.join(REGIMES)}.", **on)
  flags.DEFINE_list("batch_sizes", [str(b) for b in d.batch_sizes], "Batch sizes b (a list; "
                    "see --aggregate).", **on)
  flags.DEFINE_enum("aggregate", d.aggregate, list(AGGREGATES), "How --batch_sizes, "
                    "--step_sizes and --momenta combine: every combination (product), or the "
                    "i-th of each together (zip: lists of equal length; a list of one value goes "
                    "with every run).", **on)
  flags.DEFINE_list("step_sizes", [str(a) for a in d.step_sizes], "Step sizes α, in units of "
                    "1/λ_max (a list).", **on)
  flags.DEFINE_list("momenta", [str(m) for m in d.momenta], "Heavy-ball momenta β, negative "
                    "allowed (a list).", **on)
  flags.DEFINE_list("tau", [f"{t:g}" for t in d.taus], "τ of the spectral-diagonal regime (a "
                    "list): 1 mean-field, -1 Gaussian.", **on)
  flags.DEFINE_integer("steps", d.steps, "Steps of every run.", **on)
  flags.DEFINE_integer("seeds", d.seeds, "Independent batch sequences of each sampled run "
                       "(network, linearized): their mean and min–max band are reported.", **on)
  flags.DEFINE_integer("seed", d.seed, "Decides everything random: the subset of the data, "
                       "the network, the synthetic basis and the batches.", **on)
  flags.DEFINE_integer("hidden_width", d.hidden_width, "The network's hidden width (one hidden "
                       "layer, NTK parameterisation).", **on)
  flags.DEFINE_integer("max_averaged_examples", d.max_averaged_examples, "The averaged regime "
                       "costs O(N³) per step: it is refused above this N.", **on)


def _numbers(fv: flags.FlagValues, name: str, kind: Callable[[str], Any], ok: Callable[[Any], bool],
             want: str, problems: list[str]) -> list:
  """The values of the list flag `name`, in order; a problem line for a value that is not a
  `kind` or fails `ok`."""
  values = []
  for text in fv[name].value:
    try:
      value = kind(text)
    except ValueError:
      value = None
    if value is None or not ok(value):
      problems.append(f"--{name} must list {want}, got {text!r}")
    else:
      values.append(value)
  if not fv[name].value:
    problems.append(f"--{name} must list at least one value")
  return values


def _grid(aggregate: str, lists: tuple[list, ...], problems: list[str]) -> tuple[tuple, ...]:
  """The batch sizes, step sizes and momenta: sorted without repeats for "product"; for "zip"
  in order, a list of one value repeated to the others' length (a problem line when two lists
  of more than one value differ in length)."""
  if aggregate == "product":
    return tuple(tuple(sorted(set(values))) for values in lists)
  length = max(len(values) for values in lists)
  if any(len(values) not in (1, length) for values in lists):
    problems.append("--aggregate=zip needs --batch_sizes, --step_sizes and --momenta of equal "
                    "length (or of one value), got " + ", ".join(str(len(v)) for v in lists))
  return tuple(tuple(values * length if len(values) == 1 else values) for values in lists)


def _flag_problems(fv: flags.FlagValues) -> list[str]:
  """The data flags that do not apply to --data, and the missing ones that do (one line each)."""
  p = [f"--{name} applies to --data={' or '.join(data)}, not --data={fv.data}"
       for name, data in ONLY_FOR.items() if fv[name].present and fv.data not in data]
  if fv.data == "csv":
    p += [f"--data=csv needs --{name}" for name in ("csv_path", "target_column")
          if not fv[name].value]
    if fv.subset == "stratified":
      p.append("--subset=stratified needs classes; a CSV target is a number: --subset=random "
               "or first")
    if fv["feature_columns"].present and not fv.feature_columns:
      p.append("--feature_columns must list at least one column")
  if fv.data == "cifar10":
    for name, must_exist in (("tfds_data_dir", False), ("manual_dir", True)):
      path = fv[name].value
      reason = records.folder_problem(path, must_exist=must_exist) if path else None
      p += [f"--{name}={path}: {reason}"] if reason else []
    held = image_specs.TRAIN_SIZES["cifar10"]
    if fv.num_examples > held:
      p.append(f"--num_examples={fv.num_examples} but CIFAR-10's training split holds {held}")
  return p


def _mnist_problems(s: Settings) -> list[str]:
  """The MNIST folder: present, holding the training files, with at least N examples."""
  if not s.manual_dir:
    return ["--data=mnist needs --manual_dir=FOLDER holding " + " and ".join(idx.MNIST_TRAIN)]
  paths = [os.path.join(s.manual_dir, name) for name in idx.MNIST_TRAIN]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    return [f"--manual_dir: {' and '.join(missing)} not found"]
  try:
    held = min(idx.count(p) for p in paths)
  except errors.InputError as e:
    return [f"--manual_dir: {e}"]
  if held < s.num_examples:
    return [f"--num_examples={s.num_examples} but {s.manual_dir} holds {held} training examples"]
  return []


def _data_problems(s: Settings) -> list[str]:
  """The data files (one line): MNIST's folder; the CSV file read whole and its N rows chosen
  (`inputs.csv`). CIFAR-10 is checked when TFDS reads it, still before the kernel."""
  if s.data == "mnist":
    return _mnist_problems(s)
  if s.data == "csv":
    try:
      inputs.csv(s.csv_path, s.target_column, s.feature_columns, s.num_examples, s.subset, s.seed)
    except errors.InputError as e:
      return [str(e)]
  return []


def settings_of(fv: flags.FlagValues) -> tuple[Optional[Settings], list[str]]:
  """(the settings, []) from the parsed flags, or (None, one line per problem)."""
  p: list[str] = []
  finite = lambda x: math.isfinite(x)
  n = fv.num_examples
  regimes = [r for r in fv.regimes if r not in REGIMES]
  p += [f"--regimes: unknown regime {r!r} (regimes: {', '.join(REGIMES)})" for r in regimes]
  if not fv.regimes:
    p.append(f"--regimes must list at least one of {', '.join(REGIMES)}")
  wanted = tuple(r for r in REGIMES if r in fv.regimes)
  lists = (_numbers(fv, "batch_sizes", int, lambda b: 1 <= b <= max(n, 1),
                    f"integers in [1, --num_examples={n}]", p),
           _numbers(fv, "step_sizes", float, lambda a: finite(a) and a > 0,
                    "finite numbers > 0", p),
           _numbers(fv, "momenta", float, finite, "finite numbers", p))
  taus = tuple(sorted(set(_numbers(fv, "tau", float, finite, "finite numbers", p))))
  if not fv.out:
    p.append("--out=DIR is required")
  elif (reason := records.folder_problem(fv.out)):
    p.append(f"--out: {reason}")
  checks = [(n >= 2, f"--num_examples must be >= 2, got {n}"),
            (finite(fv.nu) and fv.nu > 0, f"--nu must be a finite number > 0, got {fv.nu}"),
            (finite(fv.kappa) and fv.kappa > 0,
             f"--kappa must be a finite number > 0, got {fv.kappa}"),
            (fv.steps >= 1, f"--steps must be >= 1, got {fv.steps}"),
            (fv.seeds >= 1, f"--seeds must be >= 1, got {fv.seeds}"),
            (fv.hidden_width >= 1, f"--hidden_width must be >= 1, got {fv.hidden_width}"),
            ("network" not in wanted or fv.data != "synthetic",
             "--regimes=network needs real inputs: --data=mnist, cifar10 or csv (synthetic "
             "data has a spectrum but no network)"),
            ("averaged" not in wanted or n <= fv.max_averaged_examples,
             f"--regimes=averaged costs O(N³) per step: --num_examples={n} is above "
             f"--max_averaged_examples={fv.max_averaged_examples}")]
  p += [line for ok, line in checks if not ok] + _flag_problems(fv)
  if all(lists):
    lists = _grid(fv.aggregate, lists, p)
  if p:
    return None, p
  s = Settings(out=fv.out, data=fv.data, manual_dir=fv.manual_dir, tfds_data_dir=fv.tfds_data_dir,
               csv_path=fv.csv_path, target_column=tuple(dict.fromkeys(fv.target_column)),
               feature_columns=(None if fv.feature_columns is None
                                else tuple(dict.fromkeys(fv.feature_columns))),
               subset=fv.subset or DEFAULT_SUBSET.get(fv.data), num_examples=n, nu=fv.nu,
               kappa=fv.kappa, regimes=wanted, batch_sizes=lists[0], step_sizes=lists[1],
               momenta=lists[2], taus=taus, steps=fv.steps, seeds=fv.seeds, seed=fv.seed,
               hidden_width=fv.hidden_width, max_averaged_examples=fv.max_averaged_examples,
               aggregate=fv.aggregate)
  found = _data_problems(s)
  return (None, found) if found else (s, [])
