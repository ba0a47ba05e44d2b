"""One study end to end: the problem (kernel computed and eigendecomposed once), every run, the
fits, results.json, the four PDFs and the printed table.

Everything runs in float64 (`jax.enable_x64` inside `run` only): the losses fall over many
decades and the recurrences subtract nearly equal terms. `--seed` decides everything random,
through three keys split from it: the network's initialisation, the synthetic basis, and the
batches.
"""

import os
from typing import Callable

import jax
import numpy as np

from sam_edge.linear_sgd import figures, fits, problem, results, runs, scan
from sam_edge.linear_sgd.settings import Settings
from sam_edge.plots import figure

RESULTS = "results.json"
CURVES, SPECTRUM, STABILITY, BUDGET = "curves.pdf", "spectrum.pdf", "stability.pdf", "budget.pdf"


def build_problem(s: Settings, key: jax.Array) -> problem.Problem:
  """The study's problem; the N×N kernel only when a regime other than spectral_diagonal needs
  it."""
  k_init, k_basis = jax.random.split(key)
  if s.data == "mnist":
    return problem.mnist(s.manual_dir, s.num_examples, s.hidden_width, k_init)
  with_kernel = any(r != "spectral_diagonal" for r in s.regimes)
  return problem.synthetic(s.num_examples, s.nu, s.kappa, k_basis, with_kernel)


def title(s: Settings) -> str:
  """The figures' title: the data and N."""
  if s.data == "mnist":
    return f"MNIST, N={s.num_examples}, one hidden layer of {s.hidden_width}"
  return f"synthetic, N={s.num_examples}, ν={s.nu:g}, κ={s.kappa:g}"


def run(s: Settings, log: Callable[[str], None] = print) -> int:
  """Runs the study `s`, writes its outputs into `s.out`, prints the table; returns 0."""
  with jax.enable_x64(True):
    k_problem, k_batches = jax.random.split(jax.random.PRNGKey(s.seed))
    p = build_problem(s, k_problem)
    log(f"{title(s)}: spectrum ready (λ_max = 1, Tr K̃ = {np.sum(p.eigenvalues):.4g}, "
        f"L(0) = {np.mean(p.c0) / 2:.4g})")
    record = scan.record_mask(s.steps)
    curves = runs.run_all(p, s, record, k_batches, log)
  steps = np.flatnonzero(record)
  spectrum = fits.spectrum(p.eigenvalues, p.c0)
  doc = results.document(spectrum, curves, steps)
  os.makedirs(s.out, exist_ok=True)
  results.write(os.path.join(s.out, RESULTS), doc)
  head = title(s)
  figure.write(os.path.join(s.out, CURVES), figures.curves_panels(curves, steps),
               columns=3, title=head)
  figure.write(os.path.join(s.out, SPECTRUM), figures.spectrum_panels(p.eigenvalues, p.c0,
                                                                      spectrum),
               columns=2, title=f"{head}: predicted loss exponent min(κ/ν, 2 − 1/ν) = "
                                f"{spectrum.predicted_exponent:.3f}")
  figure.write(os.path.join(s.out, STABILITY),
               figures.stability_heatmaps(curves, p.eigenvalues, s.num_examples),
               columns=max(1, len(s.batch_sizes)), title=f"{head}: log10 L after {s.steps} steps")
  figure.write(os.path.join(s.out, BUDGET), figures.budget_panels(curves, steps),
               columns=2, title=head)
  log(f"spectrum: nu={spectrum.nu:.4f} kappa={spectrum.kappa:.4f} predicted exponent="
      f"{spectrum.predicted_exponent:.4f} (fitted over k in [{spectrum.window[0]}, "
      f"{spectrum.window[1]}])")
  for line in results.table(doc, curves, p.eigenvalues, s.num_examples):
    log(line)
  log(f"wrote {RESULTS}, {CURVES}, {SPECTRUM}, {STABILITY}, {BUDGET} into {s.out}")
  return 0
