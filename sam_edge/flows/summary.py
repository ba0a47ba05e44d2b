"""How closely the central flow follows GD: the running average of GD's loss, the
edge-of-stability phase, and the agreement figures the benchmark and the command print.

* The running average of GD's loss over `window` steps is centred (NaN where the window does not
  fit), so it does not lag behind. The flow predicts GD's loss averaged over its oscillation, and
  at the edge GD's loss also swings slowly: λ1 rises above 2/η, the oscillation grows and pulls
  it back, the oscillation shrinks, λ1 rises again (self-stabilisation), a cycle of tens of steps
  (~70 on the benchmark's MLP). A boxcar of w steps keeps sin(πw/P)/(πw/P) of a cycle of period
  P: a 20-step average keeps 87% of a 70-step swing, so it is no time-average of it. With
  `window` 0 (the command's default) the window is one such cycle, measured (`cycle_period`):
  the period P of the largest peak in the spectrum of GD's detrended log-loss over the settled
  phase, the loss first averaged over WINDOW steps so that the step-to-step (period-2)
  oscillation does not hide the slow one; window = max(WINDOW, round(P)), or WINDOW where
  `cycle_period` finds no cycle. The cycle lengthens as the loss falls (63 steps over the
  benchmark's steps 427–800, ~150 after step 1,000), so one window for the phase is a
  compromise; the command prints it and `--average_window` fixes it.
* GD's edge-of-stability (EoS) phase starts at the first step where its λ1 reaches 2/η from
  below (`turns_on`: a start above 2/η is not the edge) and runs to the end. GD enters it
  through relaxation transients the flow does not model: λ1 keeps rising above 2/η while an
  oscillation grows from almost nothing, a catapult throws it back below, the oscillation dies
  out and λ1 rises again, each cycle smaller. The settled phase is where GD is at the edge for
  good: it starts half a window after the first step from which GD's λ1 stays within
  `tolerance` (5%) of 2/η to the end (`settles`), so that the running average leaves the last
  catapult out. The flow's edge phase starts where its Σ turns non-zero (again from zero:
  `turns_on`).
* loss_relative_error: max over the settled phase (where the average is defined) of
  |L_predicted − avg(L_GD)| / avg(L_GD); loss_relative_error_mean is its mean;
  loss_phase_mean_relative_error = |mean L_predicted / mean L_GD − 1| over the phase, a check
  that needs no window. The `_from_onset` figures take the whole EoS phase, transients included.
* sharpness_relative_error: max over the flow's edge phase of |S − 2/η| / (2/η).
* outsider_edge_start, outsider_edge_steps: the first step, and the number of steps, where λ_{k+1}
  (the largest eigenvalue outside the flow's block) is within OUTSIDE (0.1%) of 2/η or above:
  more than k eigenvalues are at the edge, and the flow needs a larger --critical_eigenvalues.
* distance_ratio, gradient_flow_distance_ratio: max over the settled phase of ‖w_GD − w_flow‖ /
  ‖w_GD − w_0‖ for the central flow and for gradient flow (w_0 the shared initialisation), with
  `_from_onset` variants; `final_distance_ratio`, `final_gradient_flow_distance_ratio`: at the
  last step.
"""

from typing import Optional

import numpy as np

WINDOW = 20
TOLERANCE = 0.05
OUTSIDE = 1e-3
CYCLES = 4
PADDING = 8
SWING = 1e-3
SHARE = 0.5
BAND = 1.25


def running_average(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
  """The centred mean of `x` over `window` points (NaN where the window does not fit)."""
  x = np.asarray(x, np.float64)
  out = np.full(x.shape, np.nan)
  if window < 1 or len(x) < window:
    return out
  sums = np.convolve(x, np.ones(window) / window, mode="valid")
  left = (window - 1) // 2
  out[left:left + len(sums)] = sums
  return out


def first(mask: np.ndarray) -> Optional[int]:
  """The first index where `mask` holds, or None."""
  hits = np.flatnonzero(mask)
  return int(hits[0]) if hits.size else None


def turns_on(mask: np.ndarray) -> Optional[int]:
  """The first step t ≥ 1 where `mask` holds and did not at t − 1, or None."""
  mask = np.asarray(mask, bool)
  hit = first(mask[1:] & ~mask[:-1])
  return None if hit is None else hit + 1


def edge_start(lambda1: np.ndarray, edge: float) -> Optional[int]:
  """The first step where λ1 reaches `edge` from below, or None."""
  return turns_on(np.asarray(lambda1) >= edge)


def settles(lambda1: np.ndarray, edge: float, start: int, tolerance: float = TOLERANCE
            ) -> Optional[int]:
  """The first step t ≥ `start` from which |λ1 − edge| ≤ tolerance·edge holds at every later
  step, or None (λ1 leaves the band at the last step, or `start` is past the end)."""
  inside = np.abs(np.asarray(lambda1)[start:] - edge) <= tolerance * edge
  outside = np.flatnonzero(~inside)                       # a NaN λ1 is outside
  settled = start if outside.size == 0 else start + int(outside[-1]) + 1
  return settled if settled < len(lambda1) else None


def settled_start(settling: Optional[int], window: int, steps: int) -> Optional[int]:
  """The first step of the settled phase (module doc): half a window after `settling` (the step
  `settles` gives from the onset); None where GD never settles or the phase would be empty in a
  run of `steps` steps."""
  if settling is None or settling + window // 2 >= steps:
    return None
  return settling + window // 2


def _finite_stretch(y: np.ndarray) -> np.ndarray:
  """The first contiguous stretch of finite values of `y` (empty if none)."""
  ok = np.isfinite(y)
  if not ok.any():
    return y[:0]
  first = int(np.argmax(ok))
  rest = ok[first:]
  return y[first:first + (len(rest) if rest.all() else int(np.argmin(rest)))]


def cycle_period(loss: np.ndarray, start: int) -> Optional[float]:
  """The period in steps of GD's slow loss cycle from `start` on (module doc), or None where
  there is no cycle that matters.

  With y = log of the WINDOW-step running average of `loss` from `start` on (its first finite
  stretch, at least CYCLES·WINDOW steps, all positive), r = y − its least-squares cubic in t,
  and R(f) = |FFT(r · Hann)|² (zero-padded PADDING times for a finer grid), f* = argmax R(f)
  over CYCLES/len(r) ≤ f ≤ 1/2 and P = 1/f*. None where f* is the band's lowest frequency (no
  cycle repeats CYCLES times); where the power within a factor BAND (1.25) of f*, the cycle
  (whose period may drift), is less than SHARE (half) of the band's (no dominant cycle: noise);
  or where that cycle's amplitude √(2 · share · var r) is below SWING (it moves the loss by less
  than 0.1%).
  """
  y = _finite_stretch(running_average(np.asarray(loss, np.float64), WINDOW)[start:])
  if len(y) < CYCLES * WINDOW or np.any(y <= 0):
    return None
  y = np.log(y)
  t = np.linspace(-1.0, 1.0, len(y))
  r = y - np.polyval(np.polyfit(t, y, 3), t)
  size = PADDING * len(y)
  power = np.abs(np.fft.rfft(r * np.hanning(len(y)), size)) ** 2
  freqs = np.fft.rfftfreq(size)
  band = np.flatnonzero((freqs >= CYCLES / len(y)) & (freqs <= 0.5))
  peak = band[np.argmax(power[band])]
  if peak == band[0]:
    return None
  near = (freqs[band] >= freqs[peak] / BAND) & (freqs[band] <= freqs[peak] * BAND)
  share = float(np.sum(power[band][near]) / np.sum(power[band]))
  swing = np.sqrt(2 * share * np.var(r))            # the cycle's amplitude in log-loss
  if swing < SWING or share < SHARE:
    return None
  return float(1.0 / freqs[peak])


def resolved_window(loss: np.ndarray, settling: Optional[int], window: int
                    ) -> tuple[int, Optional[float]]:
  """(the running average's window, GD's measured cycle period or None): `window` itself where
  it is positive, else one cycle (module doc); the period is measured from `settling`, the step
  where GD settles (None: no period)."""
  period = None if settling is None else cycle_period(loss, settling)
  return (window if window > 0 else cycle_window(period)), period


def cycle_window(period: Optional[float]) -> int:
  """The window of one cycle: max(WINDOW, round(period)), or WINDOW where no cycle was found."""
  return WINDOW if period is None else max(WINDOW, int(round(period)))


def _max(x: np.ndarray) -> Optional[float]:
  x = x[np.isfinite(x)]
  return float(np.max(x)) if x.size else None


def _mean(x: np.ndarray) -> Optional[float]:
  x = x[np.isfinite(x)]
  return float(np.mean(x)) if x.size else None


def _phase(curves: dict, start: int, window: int, suffix: str) -> dict:
  """The loss and distance figures over the steps from `start` on."""
  average = running_average(curves["gd_loss"], window)[start:]
  predicted = np.asarray(curves["flow_predicted_loss"], np.float64)[start:]
  error = np.abs(predicted - average) / average
  gd = np.asarray(curves["gd_loss"], np.float64)[start:]
  both = np.isfinite(gd) & np.isfinite(predicted)
  phase_mean = (abs(float(np.mean(predicted[both]) / np.mean(gd[both])) - 1.0)
                if both.any() else None)
  travelled = np.asarray(curves["gd_displacement"], np.float64)[start:]
  travelled = np.where(travelled > 0, travelled, np.nan)
  return {f"loss_relative_error{suffix}": _max(error),
          f"loss_relative_error_mean{suffix}": _mean(error),
          f"loss_phase_mean_relative_error{suffix}": phase_mean,
          f"distance_ratio{suffix}": _max(np.asarray(curves["distance_flow"])[start:] / travelled),
          f"gradient_flow_distance_ratio{suffix}": _max(
              np.asarray(curves["distance_gradient_flow"])[start:] / travelled)}


def metrics(curves: dict, step_size: float, window: int = 0,
            tolerance: float = TOLERANCE) -> dict:
  """The figures of the module doc (None where a phase is empty), with the steps where the
  phases start: `eos_start`, `settled_start`, `flow_edge_start`; `window`, the running
  average's (0: one measured cycle, `resolved_window`), and `cycle_period`, the measured one."""
  edge = 2.0 / step_size
  lambda1 = np.asarray(curves["gd_lambda1"])
  onset = edge_start(lambda1, edge)
  settling = None if onset is None else settles(lambda1, edge, onset, tolerance)
  window, period = resolved_window(curves["gd_loss"], settling, window)
  settled = settled_start(settling, window, len(lambda1))
  trace = np.trace(np.asarray(curves["flow_sigma"]), axis1=1, axis2=2)
  flow_start = turns_on(trace > 0)
  out = {"eos_start": onset, "settled_start": settled, "flow_edge_start": flow_start,
         "edge": edge, "window": window, "cycle_period": period, "tolerance": tolerance,
         "sharpness_relative_error": None}
  for suffix, start in (("", settled), ("_from_onset", onset)):
    if start is None:
      out.update({f"{key}{suffix}": None for key in (
          "loss_relative_error", "loss_relative_error_mean", "loss_phase_mean_relative_error",
          "distance_ratio",
          "gradient_flow_distance_ratio")})
    else:
      out.update(_phase(curves, start, window, suffix))
  outside = np.asarray(curves["flow_outsider_eigenvalue"], np.float64) >= edge * (1 - OUTSIDE)
  out["outsider_edge_start"] = first(outside)
  out["outsider_edge_steps"] = int(np.sum(outside))
  if flow_start is not None:
    sharpness = np.asarray(curves["flow_eigenvalues"])[flow_start:, 0]
    out["sharpness_relative_error"] = _max(np.abs(sharpness - edge) / edge)
  travelled = float(curves["gd_displacement"][-1])
  for key, name in (("final_distance_ratio", "distance_flow"),
                    ("final_gradient_flow_distance_ratio", "distance_gradient_flow")):
    out[key] = float(curves[name][-1]) / travelled if travelled else None
  return out


def table(m: dict, seconds_per_step: float) -> list[str]:
  """The printed lines: each figure with its target."""
  shown = lambda x: "n/a" if x is None else f"{x:.4f}"
  return [
      f"GD reaches 2/η = {m['edge']:.4g} at step {m['eos_start']}; the settled phase (GD's λ1 "
      f"within {m['tolerance']:.0%} of 2/η to the end) starts at step {m['settled_start']}; the "
      f"flow is at its edge from step {m['flow_edge_start']}",
      f"GD's running-average loss over {m['window']} steps" + cycle_words(m),
      f"{'figure':<30} {'settled':>9} {'from onset':>11}",
      f"{'loss_relative_error':<30} {shown(m['loss_relative_error']):>9} "
      f"{shown(m['loss_relative_error_from_onset']):>11}   max (target < 0.05)",
      f"{'loss_relative_error_mean':<30} {shown(m['loss_relative_error_mean']):>9} "
      f"{shown(m['loss_relative_error_mean_from_onset']):>11}",
      f"{'loss_phase_mean_relative_error':<30} {shown(m['loss_phase_mean_relative_error']):>9} "
      f"{shown(m['loss_phase_mean_relative_error_from_onset']):>11}   no window: the phase's "
      f"mean predicted loss against GD's",
      f"{'sharpness_relative_error':<30} {shown(m['sharpness_relative_error']):>9} "
      f"{'':>11}   max once the flow is at its edge (target < 0.02)",
      f"{'distance_ratio':<30} {shown(m['distance_ratio']):>9} "
      f"{shown(m['distance_ratio_from_onset']):>11}   max (target < 0.10); last step "
      f"{shown(m['final_distance_ratio'])}",
      f"{'gradient_flow_distance_ratio':<30} {shown(m['gradient_flow_distance_ratio']):>9} "
      f"{shown(m['gradient_flow_distance_ratio_from_onset']):>11}   max (target > "
      f"distance_ratio); last step {shown(m['final_gradient_flow_distance_ratio'])}",
      f"{'seconds_per_step':<30} {seconds_per_step:>9.4f}"] + outside_line(m)


def cycle_words(m: dict) -> str:
  """How the window stands to GD's measured loss cycle, for the table's second line."""
  period = m["cycle_period"]
  if period is None:
    return " (no cycle of its loss found)"
  if m["window"] == cycle_window(period):
    return f" (one cycle of its loss: a period of {period:.1f} steps)"
  return f" (fixed; its loss cycles with a period of {period:.1f} steps)"


def outside_line(m: dict) -> list[str]:
  """A warning line where λ_{k+1} reached 2/η (none otherwise)."""
  if m["outsider_edge_start"] is None:
    return []
  return [f"λ_{{k+1}}, the largest eigenvalue outside the flow's block, is at 2/η (within "
          f"{OUTSIDE:.1%}) at {m['outsider_edge_steps']} steps from step "
          f"{m['outsider_edge_start']}: more eigenvalues are at the edge than the flow holds; "
          f"raise --critical_eigenvalues"]
