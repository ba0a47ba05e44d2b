"""results.json and the table the command prints.

results.json holds exactly

* `spectrum`: `nu`, `kappa` (fitted, `fits.spectrum`), `predicted_exponent`, and the fitted
  constants `scale` (Λ in λ_k ≈ Λ k^(−ν)) and `tail_scale` (K in Σ_{l>k} C_l(0) ≈ K k^(−κ));
* `runs`: one {`regime`, `tau`, `batch_size`, `step_size`, `momentum`, `final_loss`,
  `converged`, `exponent`} per run. `final_loss` is the loss at the last step (the mean over
  seeds for the sampled regimes); `converged` is measured: every seed's final loss is finite and
  their mean is below the loss at step 0; `exponent` is `fits.tail_exponent` of the (mean) curve;
  `tau` is null outside the spectral-diagonal regime;
* `best`: keyed "<regime>/tau=<τ>/b=<b>" (no "/tau=" for regimes without τ), the run with the
  lowest finite final loss as {`step_size`, `momentum`, `final_loss`} (all null when every run of
  the key overflowed);
* `files`: {`curves`, `spectrum`}, the names of curves.npz and spectrum.npz in the same folder
  (`arrays`): every run's loss curves and the spectrum.

Non-finite numbers are written as null. The printed table adds, per run, whether the three
conditions of `conditions` hold (with the run's τ; τ = 1 for the regimes without one) and, where
the linearized regime ran with the same (b, α, β), the mean |log10 L − log10 L_linearized| over
the recorded steps (its seed mean): how far a regime's curve stays from the sampled linearised
ones; and, for a spectral-diagonal run with a law (`asymptotics`), its final loss over the law
at the last step (`to_law`).
"""

import json
import math
from typing import Any, Optional

import numpy as np

from sam_edge import records
from sam_edge.linear_sgd import conditions, fits
from sam_edge.linear_sgd.runs import Curve


def _number(x: Any) -> Optional[float]:
  """`x` as a float, None when it is None or not finite."""
  return None if x is None or not math.isfinite(float(x)) else float(x)


def converged(curve: Curve) -> bool:
  """Every seed's final loss finite and the mean final loss below the loss at step 0."""
  final = curve.losses[:, -1]
  return bool(np.all(np.isfinite(final)) and np.mean(final) < curve.mean[0])


def run_entry(curve: Curve, steps: np.ndarray) -> dict[str, Any]:
  """The run's entry of `runs` (module doc)."""
  return {"regime": curve.regime, "tau": curve.tau, "batch_size": curve.batch_size,
          "step_size": curve.step_size, "momentum": curve.momentum,
          "final_loss": _number(curve.mean[-1]), "converged": converged(curve),
          "exponent": _number(fits.tail_exponent(steps, curve.mean))}


def best(curves: list[Curve]) -> dict[str, dict[str, Any]]:
  """The `best` table (module doc)."""
  out: dict[str, dict[str, Any]] = {}
  for c in curves:
    final = _number(c.mean[-1])
    held = out.setdefault(c.key, {"step_size": None, "momentum": None, "final_loss": None})
    if final is not None and (held["final_loss"] is None or final < held["final_loss"]):
      out[c.key] = {"step_size": c.step_size, "momentum": c.momentum, "final_loss": final}
  return out


def gap_to_linearized(curve: Curve, curves: list[Curve]) -> Optional[float]:
  """Mean |log10 L − log10 L_linearized| over the recorded steps where both are finite and
  positive, against the linearized run with the same (b, α, β); None without one."""
  twin = next((c for c in curves if c.regime == "linearized" and
               (c.batch_size, c.step_size, c.momentum) ==
               (curve.batch_size, curve.step_size, curve.momentum)), None)
  if twin is None or twin is curve:
    return None
  a, b = curve.mean, twin.mean
  keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
  return float(np.mean(np.abs(np.log10(a[keep]) - np.log10(b[keep])))) if keep.any() else None


def document(spectrum: fits.Spectrum, curves: list[Curve], steps: np.ndarray,
             files: dict[str, str]) -> dict[str, Any]:
  """The contents of results.json; `files` names curves.npz and spectrum.npz."""
  return {"spectrum": {"nu": _number(spectrum.nu), "kappa": _number(spectrum.kappa),
                       "predicted_exponent": _number(spectrum.predicted_exponent),
                       "scale": _number(spectrum.scale),
                       "tail_scale": _number(spectrum.tail_scale)},
          "runs": [run_entry(c, steps) for c in curves],
          "best": best(curves),
          "files": dict(files)}


def write(path: str, doc: dict[str, Any]) -> None:
  """Writes results.json atomically (strict JSON: no NaN or infinity)."""
  records.atomic_write_bytes(path, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())


def _shown(x: Optional[float], spec: str) -> str:
  return "-" if x is None else format(x, spec)


def law_ratio(curve: Curve, last_step: int) -> Optional[float]:
  """The run's final (mean) loss over its predicted law at the last step; None without a law."""
  if curve.law is None:
    return None
  with np.errstate(divide="ignore", invalid="ignore"):
    return _number(curve.mean[-1] / curve.law.at(np.array([last_step]))[0])


def table(doc: dict[str, Any], curves: list[Curve], eigenvalues: np.ndarray, n: int,
          last_step: int) -> list[str]:
  """The printed lines: one per run (module doc), then one per `best` key."""
  lines = [f"{'regime':<24} {'b':>5} {'alpha':>8} {'beta':>7} {'final_loss':>11} "
           f"{'converged':>9} {'conditions':>10} {'exponent':>8} {'gap_to_lin':>10} "
           f"{'to_law':>7}"]
  for c, r in zip(curves, doc["runs"]):
    tau = 1.0 if c.tau is None else c.tau
    theory = conditions.holds(eigenvalues, c.step_size, c.momentum,
                              conditions.gamma(n, c.batch_size), tau)
    lines.append(f"{c.label:<24} {c.batch_size:>5} {c.step_size:>8.4g} {c.momentum:>7.3g} "
                 f"{_shown(r['final_loss'], '.4g'):>11} {str(r['converged']).lower():>9} "
                 f"{'hold' if theory else 'fail':>10} {_shown(r['exponent'], '.3f'):>8} "
                 f"{_shown(gap_to_linearized(c, curves), '.4f'):>10} "
                 f"{_shown(law_ratio(c, last_step), '.3f'):>7}")
  for key, b in doc["best"].items():
    lines.append(f"best {key}: alpha={_shown(b['step_size'], 'g')} "
                 f"beta={_shown(b['momentum'], 'g')} final_loss={_shown(b['final_loss'], '.4g')}")
  return lines
