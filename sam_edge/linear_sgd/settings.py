"""The command line of `python -m sam_edge.power_law`: its flags, their checks (one line each,
before anything is computed) and the settings they give. No jax here: `--help` stays fast.
"""

import dataclasses
import math
import os
from typing import Any, Callable, Optional

from absl import flags

from sam_edge import errors, records
from sam_edge.data import idx

REGIMES = ("network", "linearized", "averaged", "spectral_diagonal")
DATA = ("synthetic", "mnist")


@dataclasses.dataclass(frozen=True)
class Settings:
  """The study: data, regimes (in REGIMES order) and the grid (sorted, without repeats)."""
  out: str
  data: str = "synthetic"
  manual_dir: Optional[str] = None
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


def define_flags(fv: flags.FlagValues) -> None:
  """The command's flags on `fv`, with the defaults of `Settings`."""
  on = {"flag_values": fv}
  d = Settings(out="")
  flags.DEFINE_string("out", None, "Folder for curves.pdf, spectrum.pdf, stability.pdf, "
                      "budget.pdf and results.json (created if missing).", **on)
  flags.DEFINE_enum("data", d.data, list(DATA), "synthetic: exact power laws λ_k = k^-ν, "
                    "C_k(0) ∝ k^(-κ-1); mnist: the first --num_examples MNIST training images "
                    "with their digit as a standardised scalar target.", **on)
  flags.DEFINE_string("manual_dir", None, "With --data=mnist: the folder holding MNIST's IDX "
                      "files train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz.", **on)
  flags.DEFINE_integer("num_examples", d.num_examples, "N, the number of training points.", **on)
  flags.DEFINE_float("nu", d.nu, "Synthetic data: λ_k = k^-ν.", **on)
  flags.DEFINE_float("kappa", d.kappa, "Synthetic data: tail sums Σ_{l>k} C_l(0) ∝ k^-κ.", **on)
  flags.DEFINE_list("regimes", list(d.regimes), f"Any of {','.join(REGIMES)}.", **on)
  flags.DEFINE_list("batch_sizes", [str(b) for b in d.batch_sizes], "Batch sizes b (a list; "
                    "the product of batch sizes, step sizes and momenta is run).", **on)
  flags.DEFINE_list("step_sizes", [str(a) for a in d.step_sizes], "Step sizes α, in units of "
                    "1/λ_max (a list).", **on)
  flags.DEFINE_list("momenta", [str(m) for m in d.momenta], "Heavy-ball momenta β, negative "
                    "allowed (a list).", **on)
  flags.DEFINE_list("tau", [f"{t:g}" for t in d.taus], "τ of the spectral-diagonal regime (a "
                    "list): 1 mean-field, -1 Gaussian.", **on)
  flags.DEFINE_integer("steps", d.steps, "Steps of every run.", **on)
  flags.DEFINE_integer("seeds", d.seeds, "Independent batch sequences of each sampled run "
                       "(network, linearized): their mean and min–max band are reported.", **on)
  flags.DEFINE_integer("seed", d.seed, "Decides everything random: the network, the synthetic "
                       "basis and the batches.", **on)
  flags.DEFINE_integer("hidden_width", d.hidden_width, "The network's hidden width (one hidden "
                       "layer, NTK parameterisation).", **on)
  flags.DEFINE_integer("max_averaged_examples", d.max_averaged_examples, "The averaged regime "
                       "costs O(N³) per step: it is refused above this N.", **on)


def _numbers(fv: flags.FlagValues, name: str, kind: Callable[[str], Any], ok: Callable[[Any], bool],
             want: str, problems: list[str]) -> tuple:
  """The values of the list flag `name`, sorted without repeats; a problem line for a value that
  is not a `kind` or fails `ok`."""
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
  return tuple(sorted(set(values)))


def _data_problems(s: Settings) -> list[str]:
  """The MNIST folder: present, holding the training files, with at least N examples (one
  line)."""
  if s.data != "mnist":
    return []
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
  batch_sizes = _numbers(fv, "batch_sizes", int, lambda b: 1 <= b <= max(n, 1),
                         f"integers in [1, --num_examples={n}]", p)
  step_sizes = _numbers(fv, "step_sizes", float, lambda a: finite(a) and a > 0,
                        "finite numbers > 0", p)
  momenta = _numbers(fv, "momenta", float, finite, "finite numbers", p)
  taus = _numbers(fv, "tau", float, finite, "finite numbers", p)
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
            ("network" not in wanted or fv.data == "mnist",
             "--regimes=network needs real inputs: --data=mnist (synthetic data has a spectrum "
             "but no network)"),
            ("averaged" not in wanted or n <= fv.max_averaged_examples,
             f"--regimes=averaged costs O(N³) per step: --num_examples={n} is above "
             f"--max_averaged_examples={fv.max_averaged_examples}")]
  p += [line for ok, line in checks if not ok]
  if p:
    return None, p
  s = Settings(out=fv.out, data=fv.data, manual_dir=fv.manual_dir, num_examples=n, nu=fv.nu,
               kappa=fv.kappa, regimes=wanted, batch_sizes=batch_sizes, step_sizes=step_sizes,
               momenta=momenta, taus=taus, steps=fv.steps, seeds=fv.seeds, seed=fv.seed,
               hidden_width=fv.hidden_width, max_averaged_examples=fv.max_averaged_examples)
  found = _data_problems(s)
  return (None, found) if found else (s, [])
