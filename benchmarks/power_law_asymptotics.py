"""The spectral-diagonal (SD) loss against its predicted law, on the paper's synthetic problem.

λ_k = k^(−ν), C_k(0) ∝ k^(−κ−1) with ν = 1.5, κ = 3 (`problem.power_law_spectrum`), batch size
b = 10, τ = 1, for N = 10³ and 10⁴: the SD recurrence runs to t = 10⁵ (one `lax.scan` per
setting, O(N) per step) and its loss is divided by the law `power_law` draws dashed on curves.pdf
(`asymptotics.law`, with ν, κ, Λ and K fitted from the spectrum as the command fits them) at
t = 10³, 10⁴ and 10⁵. Here ζ = κ/ν = 2 > 2 − 1/ν = 4/3: the noise term of the law dominates, and
the ratio should approach 1 as N and t grow, until t reaches the finite spectrum's end: the
smallest eigenvalue is λ_N = N^(−ν), and once 2α_eff·λ_N·t ~ 1 (α_eff = α/(1−β)) every mode is
learnt and the loss falls below the law. The table prints that product too.

    python benchmarks/power_law_asymptotics.py [--json PATH] [--sizes=1000,10000]
        [--steps=100000] [--settings=0.7:-0.15,0.5:0]
"""

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sam_edge.linear_sgd import asymptotics, conditions, fits, problem, recurrences  # noqa: E402

NU, KAPPA, BATCH, TAU = 1.5, 3.0, 10, 1.0


def measure(n: int, alpha: float, beta: float, times: list[int], steps: int) -> dict:
  """The SD loss, the law, their ratio and 2α_eff·λ_N·t at `times`, for one N and (α, β)."""
  eigenvalues, c0 = problem.power_law_spectrum(n, NU, KAPPA)
  g = conditions.gamma(n, BATCH)
  record = np.zeros(steps + 1, dtype=bool)
  record[times] = True
  start = time.perf_counter()
  with jax.enable_x64(True):
    losses = np.asarray(recurrences.spectral_diagonal_losses(
        jnp.asarray(eigenvalues), jnp.asarray(c0), alpha, beta, g, TAU, jnp.asarray(record)))
  seconds = time.perf_counter() - start
  law = asymptotics.law(eigenvalues, c0, fits.spectrum(eigenvalues, c0), alpha, beta, g, TAU)
  predicted = law.at(np.asarray(times))
  return {"n": n, "step_size": alpha, "momentum": beta, "times": times,
          "sd_loss": losses[times].tolist(), "law": predicted.tolist(),
          "ratio": (losses[times] / predicted).tolist(),
          "saturation": [2 * alpha / (1 - beta) * eigenvalues[-1] * t for t in times],
          "law_constants": law._asdict(), "seconds": seconds}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", help="also write the table to this JSON file")
  parser.add_argument("--sizes", default="1000,10000", help="the N, comma-separated")
  parser.add_argument("--steps", type=int, default=100_000, help="the last t (a power of 10)")
  parser.add_argument("--settings", default="0.7:-0.15,0.5:0",
                      help="α:β pairs, comma-separated (0.7:-0.15 is the paper's optimum)")
  args = parser.parse_args()
  times = [10 ** e for e in range(3, int(round(np.log10(args.steps))) + 1)]
  settings = [tuple(float(v) for v in pair.split(":")) for pair in args.settings.split(",")]
  rows = []
  print(f"SD (τ = {TAU:g}) over its law, ν = {NU}, κ = {KAPPA}, b = {BATCH}; in brackets "
        "2α_eff·λ_N·t")
  print(f"{'N':>7} {'alpha':>6} {'beta':>6} " + " ".join(f"{f't=1e{len(str(t)) - 1}':>19}"
                                                      for t in times) + f" {'seconds':>8}")
  for n in (int(v) for v in args.sizes.split(",")):
    for alpha, beta in settings:
      row = measure(n, alpha, beta, times, args.steps)
      rows.append(row)
      print(f"{n:>7} {alpha:>6g} {beta:>6g} " + " ".join(
          f"{r:>8.4f} [{s:>8.2e}]" for r, s in zip(row["ratio"], row["saturation"]))
          + f" {row['seconds']:>8.1f}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps({"nu": NU, "kappa": KAPPA, "batch_size": BATCH,
                                                   "tau": TAU, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
  main()
