"""The study's four figures as panels for the figure engine (`plots.figure`).

* curves.pdf: loss against step, log-log, every regime overlaid, one panel per (b, α, β) (at
  most MAX_CURVE_PANELS: beyond that, the best (α, β) of each regime and batch size); the
  sampled regimes are their seed mean with a min–max band; each spectral-diagonal run with a
  law (`asymptotics`) has it dashed, in its colour, its constants in the legend.
* spectrum.pdf: λ_k and the tail sums Σ_{l>k} C_l(0) against k with the fitted power laws.
* stability.pdf: per regime (and τ) and batch size, a heat map of log10 L at the last step over
  (α, β), coloured around log10 L(0) (blue: the loss fell; red: it grew, capped as far above as
  the best cell is below; overflowed runs get the cap; a cell not run, with --aggregate=zip, is
  empty), with the three boundaries of
  `conditions`: β = ±1, αλ_max = 2(1+β) and U(1) = 1 (with the panel's τ; τ = 1 for the
  regimes without one), and a star on the cell with the lowest loss.
* budget.pdf: per regime, L against the examples drawn t·b, one curve per batch size at its
  best (α, β).
"""

from typing import Optional

import numpy as np

from sam_edge.linear_sgd import conditions, fits
from sam_edge.linear_sgd.runs import SAMPLED, Curve
from sam_edge.plots.spec import Heatmap, Panel, Series, colour

MAX_CURVE_PANELS = 12
BOUNDARY_POINTS = 101
ANNOTATE_MAX_CELLS = 64
LOSS = "training loss L"


def _labels(curves: list[Curve]) -> list[str]:
  return list(dict.fromkeys(c.label for c in curves))


def _series(c: Curve, steps: np.ndarray, xs: np.ndarray, label: str, style: dict) -> Series:
  """The curve from step 1 on (log axes), with a min–max band over seeds when sampled."""
  mean = c.mean[steps > 0]
  if c.regime in SAMPLED and len(c.losses) > 1:
    part = c.losses[:, steps > 0]
    return Series(label, xs, mean, style, lower=np.min(part, 0), upper=np.max(part, 0))
  return Series(label, xs, mean, style)


def _best_curves(curves: list[Curve]) -> dict[str, Curve]:
  """key -> the run of that key with the lowest finite final loss."""
  out: dict[str, Curve] = {}
  for c in curves:
    final = c.mean[-1]
    if np.isfinite(final) and (c.key not in out or final < out[c.key].mean[-1]):
      out[c.key] = c
  return out


def curves_panels(curves: list[Curve], steps: np.ndarray) -> list[Panel]:
  """curves.pdf (module doc)."""
  configs = list(dict.fromkeys((c.batch_size, c.step_size, c.momentum) for c in curves))
  if len(configs) > MAX_CURVE_PANELS:
    best = _best_curves(curves).values()
    configs = list(dict.fromkeys((c.batch_size, c.step_size, c.momentum) for c in best))
    configs = configs[:MAX_CURVE_PANELS]
  labels = _labels(curves)
  panels = []
  for b, alpha, beta in configs:
    series = []
    for c in curves:
      if (c.batch_size, c.step_size, c.momentum) != (b, alpha, beta):
        continue
      shade = colour(labels.index(c.label), len(labels))
      series.append(_series(c, steps, steps[steps > 0], c.label,
                            {"color": shade, "linewidth": 1.2}))
      if c.law is not None and np.isfinite(c.law.noise):
        series.append(Series(f"law of {c.label}:\n{c.law.label()}", steps[steps > 0],
                             c.law.at(steps[steps > 0]), {"color": shade, "linestyle": "--",
                                                         "linewidth": 1.0, "marker": "none"}))
    panels.append(Panel(f"b={b}, α={alpha:g}, β={beta:g}", "step t", LOSS, series,
                        log_x=True, log_y=True, legend_loc="upper right"))   # curves fall away
  return panels


def _fitted(k: np.ndarray, values: np.ndarray, exponent: float, window: tuple[int, int]
            ) -> np.ndarray:
  """The least-squares line of log values against log k over `window`, as values at k: it
  passes through the mean point with slope −exponent."""
  part = slice(window[0] - 1, window[1])
  lk, lv = np.log(k[part]), np.log(values[part])
  keep = np.isfinite(lv)
  return np.exp(np.mean(lv[keep]) - exponent * (np.log(k) - np.mean(lk[keep])))


def spectrum_panels(eigenvalues: np.ndarray, c0: np.ndarray, s: fits.Spectrum) -> list[Panel]:
  """spectrum.pdf (module doc)."""
  k = np.arange(1, len(eigenvalues) + 1, dtype=np.float64)
  tails = fits.tail_sums(c0)
  lo, hi = s.window
  fit_k = k[lo - 1:hi]
  panels = []
  for values, exponent, name, symbol in ((eigenvalues, s.nu, "eigenvalue λ_k", "ν"),
                                         (tails, s.kappa, "tail sum Σ_{l>k} C_l(0)", "κ")):
    with np.errstate(divide="ignore", invalid="ignore"):
      line = _fitted(k, values, exponent, s.window)[lo - 1:hi]
    series = [Series(name, k, values, {"color": "C0", "linewidth": 1.2}),
              Series(f"fit k^-{symbol}, {symbol} = {exponent:.3f} (k in [{lo}, {hi}])", fit_k,
                     line, {"color": "C3", "linestyle": "--", "marker": "none"})]
    panels.append(Panel(name, "k", name, series, log_x=True, log_y=True))
  return panels


def _boundaries(eigenvalues: np.ndarray, alphas: tuple, betas: tuple, g: float, tau: float
                ) -> list[Series]:
  """β = ±1, αλ_max = 2(1+β) and U(1) = 1 over (and a little past) the grid's β range."""
  a_lo, a_hi = min(alphas), max(alphas)
  pad = (max(betas) - min(betas)) or 1.0
  beta = (np.linspace(min(betas) - pad, max(betas) + pad, BOUNDARY_POINTS) if len(betas) > 1
          else np.array(betas, dtype=np.float64))
  inside = beta[(beta > -1) & (beta < 1)]
  span = np.array([a_lo - (a_hi - a_lo + 1), a_hi + (a_hi - a_lo + 1)])
  u = [conditions.u_boundary(eigenvalues, b, g, tau) for b in inside]
  return [Series("β = ±1", np.concatenate([span, [np.nan], span]),
                 [-1, -1, np.nan, 1, 1], {"color": "black", "linestyle": ":"}),
          Series("αλ_max = 2(1+β)", [conditions.edge(eigenvalues, b) for b in inside], inside,
                 {"color": "black", "linestyle": "--"}),
          Series(f"U(1) = 1 (τ={tau:g})", u, inside, {"color": "magenta", "linewidth": 1.5})]


def stability_heatmaps(curves: list[Curve], eigenvalues: np.ndarray, n: int) -> list[Heatmap]:
  """stability.pdf (module doc)."""
  alphas = tuple(sorted({c.step_size for c in curves}))
  betas = tuple(sorted({c.momentum for c in curves}))
  maps = []
  for label in _labels(curves):
    mine = [c for c in curves if c.label == label]
    for b in sorted({c.batch_size for c in mine}):
      cells = np.full((len(betas), len(alphas)), np.nan)
      ran = np.zeros(cells.shape, dtype=bool)
      start: Optional[float] = None
      for c in (c for c in mine if c.batch_size == b):
        start = float(np.log10(c.mean[0]))
        at = betas.index(c.momentum), alphas.index(c.step_size)
        ran[at] = True
        with np.errstate(divide="ignore", invalid="ignore"):
          cells[at] = np.log10(c.mean[-1])
      finite = cells[np.isfinite(cells)]
      cap = start + max(start - float(finite.min()), 1.0) if finite.size else start + 1.0
      cells = np.where(ran & (np.isnan(cells) | (cells > cap)), cap, cells)
      tau = mine[0].tau if mine[0].tau is not None else 1.0
      lowest = np.unravel_index(np.nanargmin(cells), cells.shape)
      marker = Series("lowest loss", [alphas[lowest[1]]], [betas[lowest[0]]],
                      {"color": "gold", "marker": "*", "markersize": 12, "linestyle": "none"})
      maps.append(Heatmap(
          f"{label}, b={b}", "step size α", "momentum β", [f"{a:g}" for a in alphas],
          [f"{m:g}" for m in betas], cells, colorbar="log10 L at the last step",
          centre=start, xvalues=alphas, yvalues=betas,
          curves=_boundaries(eigenvalues, alphas, betas, conditions.gamma(n, b), tau) + [marker],
          annotate=cells.size <= ANNOTATE_MAX_CELLS))
  return maps


def budget_panels(curves: list[Curve], steps: np.ndarray) -> list[Panel]:
  """budget.pdf (module doc)."""
  best = _best_curves(curves)
  panels = []
  for label in _labels(curves):
    mine = [c for key, c in best.items() if c.label == label]
    sizes = sorted({c.batch_size for c in mine})
    series = [_series(c, steps, steps[steps > 0] * c.batch_size,
                      f"b={c.batch_size} (α={c.step_size:g}, β={c.momentum:g})",
                      {"color": colour(sizes.index(c.batch_size), len(sizes)), "linewidth": 1.2})
              for c in sorted(mine, key=lambda c: c.batch_size)]
    panels.append(Panel(label, "examples drawn t·b", LOSS, series, log_x=True, log_y=True,
                        note=None if series else "every run overflowed"))
  return panels
