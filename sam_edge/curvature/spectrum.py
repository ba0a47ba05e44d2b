"""Post-processing of SLQ nodes and weights (numpy only, no jax): densities and distances.

The SLQ spectral measure of P probes with nodes θ_pj and weights w_pj (Σ_j w_pj = 1) is

    μ̂ = (1/P) Σ_p Σ_j w_pj δ(θ_pj).

* Gaussian broadening (Ghorbani et al., 2019; PyHessian) draws it as a density on a grid:

      ρ(t) = (1/P) Σ_p Σ_j w_pj φ_σ(t − θ_pj),   φ_σ(x) = exp(−x²/(2σ²)) / (σ sqrt(2π)),

  by default with σ = 1% of the spectral width max θ − min θ, on a grid padded by 5σ each side.
* The Wasserstein-1 distance between two measures on ℝ is the area between their CDFs,

      W1(μ, ν) = ∫ |F_μ(t) − F_ν(t)| dt,

  computed exactly for discrete measures: both CDFs are step functions that change only at the
  pooled atoms, so the integral is a finite sum over consecutive atoms.
"""

from typing import Sequence

import numpy as np

DEFAULT_WIDTH_FRACTION = 0.01
DEFAULT_GRID_POINTS = 1000


def slq_measure(nodes: Sequence, weights: Sequence) -> tuple[np.ndarray, np.ndarray]:
  """The atoms and masses of μ̂ from nodes and weights [P, m]: masses w_pj / P, summing to 1."""
  nodes = np.asarray(nodes, np.float64)
  weights = np.asarray(weights, np.float64)
  if nodes.ndim == 1:
    nodes, weights = nodes[None], weights[None]
  return nodes.ravel(), weights.ravel() / nodes.shape[0]


def default_sigma(nodes: Sequence, width_fraction: float = DEFAULT_WIDTH_FRACTION) -> float:
  """σ = width_fraction · (max θ − min θ) (or width_fraction when all nodes coincide)."""
  nodes = np.asarray(nodes, np.float64)
  width = float(nodes.max() - nodes.min()) if nodes.size else 0.0
  return width_fraction * (width if width > 0 else 1.0)


def density_grid(nodes: Sequence, sigma: float, num_points: int = DEFAULT_GRID_POINTS,
                 padding: float = 5.0) -> np.ndarray:
  """`num_points` evenly spaced points from min θ − padding·σ to max θ + padding·σ."""
  nodes = np.asarray(nodes, np.float64)
  return np.linspace(nodes.min() - padding * sigma, nodes.max() + padding * sigma, num_points)


def smoothed_density(nodes: Sequence, weights: Sequence, grid: Sequence,
                     sigma: float) -> np.ndarray:
  """ρ(t) at each grid point t (module doc); integrates to 1 over ℝ."""
  atoms, masses = slq_measure(nodes, weights)
  grid = np.asarray(grid, np.float64)
  x = (grid[:, None] - atoms[None, :]) / sigma                          # [G, P·m]
  return (np.exp(-0.5 * x * x) @ masses) / (sigma * np.sqrt(2 * np.pi))


def wasserstein1(x: Sequence, y: Sequence, x_weights: Sequence | None = None,
                 y_weights: Sequence | None = None) -> float:
  """W1 = ∫|F − G| between the discrete measures Σ a_i δ(x_i) and Σ b_j δ(y_j) (module doc).

  Weights default to uniform; each set is normalised to sum to 1.
  """
  x = np.asarray(x, np.float64).ravel()
  y = np.asarray(y, np.float64).ravel()
  a = np.full(x.size, 1.0) if x_weights is None else np.asarray(x_weights, np.float64).ravel()
  b = np.full(y.size, 1.0) if y_weights is None else np.asarray(y_weights, np.float64).ravel()
  a, b = a / a.sum(), b / b.sum()
  atoms = np.concatenate([x, y])
  mass = np.concatenate([a, -b])                  # F − G jumps by +a_i at x_i and −b_j at y_j
  order = np.argsort(atoms, kind="stable")
  atoms, difference = atoms[order], np.cumsum(mass[order])
  return float(np.sum(np.abs(difference[:-1]) * np.diff(atoms)))
