"""The mean of a metric over seeds, its sample standard deviation and the half-width of its 95%
Student-t confidence interval.

For the n finite values x_1..x_n of a cell,

    mean = (1/n) Σ x_i,
    std  = s = sqrt( Σ (x_i − mean)² / (n − 1) )          (sample, ddof = 1),
    ci95 = t_{0.975, n−1} · s / √n,

the interval being mean ± ci95; std and ci95 are None for n < 2 (no spread to estimate), and
every figure is None for n = 0. t_{p, ν} is the p-quantile of Student's t with ν degrees of
freedom, computed exactly by `scipy.special.stdtrit` (scipy comes with jax, which requires it).
"""

import math
from typing import Iterable, NamedTuple, Optional

from scipy import special

LEVEL = 0.95                             # the interval's coverage


def t_quantile(p: float, dof: float) -> float:
  """t_{p, dof}: the p-quantile of Student's t distribution with `dof` > 0 degrees of freedom,
  i.e. the t with P(T ≤ t) = p."""
  if not 0 < p < 1 or not dof > 0:
    raise ValueError(f"t_quantile needs 0 < p < 1 and dof > 0, got p={p}, dof={dof}")
  return float(special.stdtrit(dof, p))


class Stats(NamedTuple):
  """A metric over the runs of a cell (module doc); None where undefined."""
  n: int
  mean: Optional[float]
  std: Optional[float]
  ci95: Optional[float]

  @property
  def lower(self) -> Optional[float]:
    """mean − ci95 (the mean itself when the interval is undefined)."""
    return None if self.mean is None else self.mean - (self.ci95 or 0.0)

  @property
  def upper(self) -> Optional[float]:
    """mean + ci95 (the mean itself when the interval is undefined)."""
    return None if self.mean is None else self.mean + (self.ci95 or 0.0)


def stats(values: Iterable[float]) -> Stats:
  """Mean, sample standard deviation and 95% t half-width of the finite `values`."""
  xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  n = len(xs)
  if n < 2:
    return Stats(n, xs[0] if xs else None, None, None)
  mean = math.fsum(xs) / n
  std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
  return Stats(n, mean, std, t_quantile(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n))
