"""Every run of a study: each regime over the (b, α, β) of the grid (`Settings.configs`: their
product, or the zipped lists) and, for the spectral-diagonal regime, the values of τ, as loss
curves on the recorded steps.

The sampled regimes (network, linearized) run every seed at once; seed s draws its batches from
the s-th key, so the network and its linearisation see the same batches. One compilation serves
a regime's whole grid (per batch size for the sampled ones): the hyperparameters are traced.
"""

import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.linear_sgd import asymptotics, conditions, recurrences, sampled
from sam_edge.linear_sgd.problem import Problem
from sam_edge.linear_sgd.settings import Settings

SAMPLED = ("network", "linearized")


class Curve(NamedTuple):
  """One run: its regime and hyperparameters (τ None outside the spectral-diagonal regime), its
  losses [seeds, recorded steps] (one row for the deterministic regimes) and, for the
  spectral-diagonal regime, its predicted law (`asymptotics`)."""
  regime: str
  tau: Optional[float]
  batch_size: int
  step_size: float
  momentum: float
  losses: np.ndarray
  law: Optional[asymptotics.Law] = None

  @property
  def key(self) -> str:
    """"<regime>/tau=<τ>/b=<b>", without "/tau=" for the regimes that have no τ."""
    return f"{self.label}/b={self.batch_size}"

  @property
  def label(self) -> str:
    """"<regime>" or "<regime>/tau=<τ>"."""
    return self.regime if self.tau is None else f"{self.regime}/tau={self.tau:g}"

  @property
  def mean(self) -> np.ndarray:
    """The loss averaged over seeds at each recorded step."""
    return np.mean(self.losses, axis=0)


Runner = Callable[[Problem, float, float, int, Optional[float]], jax.Array]


def _runners(problem: Problem, keys: jax.Array, record: jax.Array) -> dict[str, Runner]:
  """regime -> (problem, α, β, b, τ) -> losses [seeds, steps + 1]."""
  n = problem.size
  return {
      "network": lambda p, a, m, b, _: sampled.network_losses(
          p.params, p.x, p.y, a * p.eta_per_alpha, m, keys, record, batch_size=b),
      "linearized": lambda p, a, m, b, _: sampled.linearized_losses(
          p.kernel, p.d0, a, m, keys, record, batch_size=b),
      "averaged": lambda p, a, m, b, _: recurrences.averaged_losses(
          p.kernel, p.d0, a, m, conditions.gamma(n, b), record)[None],
      "spectral_diagonal": lambda p, a, m, b, tau: recurrences.spectral_diagonal_losses(
          jnp.asarray(p.eigenvalues), jnp.asarray(p.c0), a, m, conditions.gamma(n, b), tau,
          record)[None],
  }


def run_all(problem: Problem, s: Settings, record: np.ndarray, key: jax.Array,
            log: Callable[[str], None]) -> list[Curve]:
  """Every run of the study, regime by regime (one progress line each); `key` draws the seeds'
  batch keys."""
  keys = jax.random.split(key, s.seeds)
  runners = _runners(problem, keys, jnp.asarray(record))
  curves = []
  for regime in s.regimes:
    start, before = time.perf_counter(), len(curves)
    taus = s.taus if regime == "spectral_diagonal" else (None,)
    for tau in taus:
      for b, alpha, beta in s.configs:
        losses = np.asarray(runners[regime](problem, alpha, beta, b, tau))[:, record]
        curves.append(Curve(regime, tau, b, alpha, beta, losses))
    seeds = f" x {s.seeds} seeds" if regime in SAMPLED else ""
    log(f"{regime}: {len(curves) - before} runs{seeds} of {s.steps} steps in "
        f"{time.perf_counter() - start:.1f} s")
  return curves
