"""curves.npz and spectrum.npz: the numbers behind curves.pdf and spectrum.pdf, for NumPy
(`np.load(path)`; no pickles).

curves.npz, with R runs in the order of results.json's `runs`, S the most seeds of a run and T
the recorded steps:

* `steps` int64 [T]: the recorded steps, 0 first;
* `regime` str [R], `tau` float64 [R] (NaN outside the spectral-diagonal regime), `batch_size`
  int64 [R], `step_size` and `momentum` float64 [R]: each run's settings;
* `seeds` int64 [R]: how many rows of `losses` the run fills (`--seeds` for the sampled regimes,
  1 for the deterministic ones);
* `losses` float64 [R, S, T]: the loss of every run and seed at every recorded step (NaN in the
  rows past `seeds`; inf or NaN from where a run overflowed);
* `law` float64 [R, T]: the predicted law of each spectral-diagonal run (`asymptotics`); NaN for
  the other regimes, at t = 0, and where the run has no law (U(1) ≥ 1).

curves.pdf draws, for each run it shows, the mean of `losses` over the run's seeds at the steps
t > 0, with the min–max band of the seeds for the sampled regimes, and `law` dashed.

spectrum.npz: `eigenvalues` float64 [N], the λ_k of K̃ in descending order (λ_1 = 1), and `c0`
float64 [N], C_k(0) = (u_k·d₀)², the initial residual's squared coefficients in the eigenbasis
(what spectrum.pdf draws, as tail sums).
"""

import io

import numpy as np

from sam_edge import records
from sam_edge.linear_sgd.runs import Curve


def _write(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes `arrays` as an .npz file, atomically."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  records.atomic_write_bytes(path, buffer.getvalue())


def curves_arrays(curves: list[Curve], steps: np.ndarray) -> dict[str, np.ndarray]:
  """The arrays of curves.npz (module doc)."""
  rows = max((len(c.losses) for c in curves), default=1)
  losses = np.full((len(curves), rows, len(steps)), np.nan)
  law = np.full((len(curves), len(steps)), np.nan)
  for i, c in enumerate(curves):
    losses[i, :len(c.losses)] = c.losses
    if c.law is not None:
      law[i] = c.law.at(steps)
  return {"steps": np.asarray(steps, dtype=np.int64),
          "regime": np.array([c.regime for c in curves], dtype=str),
          "tau": np.array([np.nan if c.tau is None else c.tau for c in curves], dtype=np.float64),
          "batch_size": np.array([c.batch_size for c in curves], dtype=np.int64),
          "step_size": np.array([c.step_size for c in curves], dtype=np.float64),
          "momentum": np.array([c.momentum for c in curves], dtype=np.float64),
          "seeds": np.array([len(c.losses) for c in curves], dtype=np.int64),
          "losses": losses, "law": law}


def write_curves(path: str, curves: list[Curve], steps: np.ndarray) -> None:
  """Writes curves.npz (module doc)."""
  _write(path, curves_arrays(curves, steps))


def write_spectrum(path: str, eigenvalues: np.ndarray, c0: np.ndarray) -> None:
  """Writes spectrum.npz (module doc)."""
  _write(path, {"eigenvalues": np.asarray(eigenvalues, dtype=np.float64),
                "c0": np.asarray(c0, dtype=np.float64)})
