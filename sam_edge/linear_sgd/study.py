"""One study end to end: the data, the problem (kernel computed and eigendecomposed once), every
run, the fits and the laws, results.json, curves.npz, spectrum.npz, the four PDFs and the printed
table.

Everything runs in float64 (`jax.enable_x64` inside `run` only): the losses fall over many
decades and the recurrences subtract nearly equal terms. `--seed` decides everything random: the
subset of real data (a NumPy generator seeded with it, `inputs`) and, through three keys split
from it, the network's initialisation, the synthetic basis, and the batches. Real data is read
first, so that a data file found bad is one line and exit code 2 before the kernel is computed.
"""

import os
from typing import Callable, Optional

import jax
import numpy as np

from sam_edge.linear_sgd import (
  arrays,
  asymptotics,
  conditions,
  figures,
  fits,
  inputs,
  problem,
  results,
  runs,
  scan,
)
from sam_edge.linear_sgd.settings import Settings
from sam_edge.plots import figure

RESULTS = "results.json"
CURVES, SPECTRUM, STABILITY, BUDGET = "curves.pdf", "spectrum.pdf", "stability.pdf", "budget.pdf"
FILES = {"curves": "curves.npz", "spectrum": "spectrum.npz"}


def read_inputs(s: Settings, log: Callable[[str], None]) -> Optional[inputs.Inputs]:
  """The real data's standardised inputs and targets (`inputs`); None for synthetic data."""
  if s.data == "mnist":
    return inputs.mnist(s.manual_dir, s.num_examples, s.subset, s.seed)
  if s.data == "cifar10":
    return inputs.cifar10(s.tfds_data_dir, s.manual_dir, s.num_examples, s.subset, s.seed, log)
  if s.data == "csv":
    return inputs.csv(s.csv_path, s.target_column, s.feature_columns, s.num_examples, s.subset,
                      s.seed)
  return None


def build_problem(s: Settings, key: jax.Array, data: Optional[inputs.Inputs] = None
                  ) -> problem.Problem:
  """The study's problem: the network on `data`, or the synthetic one, with the N×N kernel only
  when a regime other than spectral_diagonal needs it."""
  k_init, k_basis = jax.random.split(key)
  if data is not None:
    return problem.real(data.x, data.y, s.hidden_width, k_init)
  with_kernel = any(r != "spectral_diagonal" for r in s.regimes)
  return problem.synthetic(s.num_examples, s.nu, s.kappa, k_basis, with_kernel)


def title(s: Settings, data: Optional[inputs.Inputs]) -> str:
  """The figures' title: the data and N."""
  if data is not None:
    return f"{data.description}, one hidden layer of {s.hidden_width}"
  return f"synthetic, N={s.num_examples}, ν={s.nu:g}, κ={s.kappa:g}"


def with_laws(curves: list[runs.Curve], p: problem.Problem, spectrum: fits.Spectrum
              ) -> list[runs.Curve]:
  """The curves, each spectral-diagonal one with its predicted law (`asymptotics`)."""
  return [c if c.regime != "spectral_diagonal" else c._replace(law=asymptotics.law(
      p.eigenvalues, p.c0, spectrum, c.step_size, c.momentum,
      conditions.gamma(p.size, c.batch_size), c.tau)) for c in curves]


def run(s: Settings, log: Callable[[str], None] = print) -> int:
  """Runs the study `s`, writes its outputs into `s.out`, prints the table; returns 0."""
  data = read_inputs(s, log)
  with jax.enable_x64(True):
    k_problem, k_batches = jax.random.split(jax.random.PRNGKey(s.seed))
    p = build_problem(s, k_problem, data)
    log(f"{title(s, data)}: spectrum ready (λ_max = 1, Tr K̃ = {np.sum(p.eigenvalues):.4g}, "
        f"L(0) = {np.mean(p.c0) / 2:.4g})")
    record = scan.record_mask(s.steps)
    curves = runs.run_all(p, s, record, k_batches, log)
  steps = np.flatnonzero(record)
  spectrum = fits.spectrum(p.eigenvalues, p.c0)
  curves = with_laws(curves, p, spectrum)
  doc = results.document(spectrum, curves, steps, FILES)
  os.makedirs(s.out, exist_ok=True)
  arrays.write_curves(os.path.join(s.out, FILES["curves"]), curves, steps)
  arrays.write_spectrum(os.path.join(s.out, FILES["spectrum"]), p.eigenvalues, p.c0)
  results.write(os.path.join(s.out, RESULTS), doc)
  head = title(s, data)
  figure.write(os.path.join(s.out, CURVES), figures.curves_panels(curves, steps),
               columns=3, title=head)
  figure.write(os.path.join(s.out, SPECTRUM), figures.spectrum_panels(p.eigenvalues, p.c0,
                                                                      spectrum),
               columns=2, title=f"{head}: predicted loss exponent min(κ/ν, 2 − 1/ν) = "
                                f"{spectrum.predicted_exponent:.3f}")
  figure.write(os.path.join(s.out, STABILITY),
               figures.stability_heatmaps(curves, p.eigenvalues, s.num_examples),
               columns=max(1, len(set(s.batch_sizes))),
               title=f"{head}: log10 L after {s.steps} steps")
  figure.write(os.path.join(s.out, BUDGET), figures.budget_panels(curves, steps),
               columns=2, title=head)
  log(f"spectrum: nu={spectrum.nu:.4f} kappa={spectrum.kappa:.4f} predicted exponent="
      f"{spectrum.predicted_exponent:.4f} (fitted over k in [{spectrum.window[0]}, "
      f"{spectrum.window[1]}])")
  for line in results.table(doc, curves, p.eigenvalues, s.num_examples, s.steps):
    log(line)
  log(f"wrote {RESULTS}, {FILES['curves']}, {FILES['spectrum']}, {CURVES}, {SPECTRUM}, "
      f"{STABILITY}, {BUDGET} into {s.out}")
  return 0
