"""The three panels of central_flow.pdf (`plots.figure`), against the GD step t:

  (a) GD's loss, its running average, the central flow's predicted time-averaged loss and
      gradient flow's loss;
  (b) GD's λ1, the central flow's S = λ1(w_flow) (and its other critical eigenvalues, and
      λ_{k+1}, the largest outside its block) and 2/η;
  (c) ‖w_GD − w_flow‖ / ‖w_GD − w_0‖ for the central flow and for gradient flow.
"""

import numpy as np

from sam_edge.flows import summary
from sam_edge.plots.spec import HLine, Panel, Series, VLine, colour


def panels(curves: dict, m: dict) -> list[Panel]:
  """The three panels of the module doc, with the figures `m` (`summary.metrics`) for 2/η, the
  running average's window and where the phases start."""
  steps = np.asarray(curves["step"])
  edge, window = m["edge"], m["window"]
  start, settled = m["eos_start"], m["settled_start"]
  marks = () if start is None else (VLine("GD reaches 2/η", float(start),
                                          {"color": "grey", "linestyle": ":"}),)
  marks += () if settled is None else (VLine("settled phase starts", float(settled),
                                             {"color": "grey", "linestyle": "--"}),)
  loss = Panel("(a) training loss", "GD step", "loss", [
      Series("GD", steps, curves["gd_loss"], {"color": "lightgrey", "linewidth": 0.8}),
      Series(f"GD, running average ({window} steps)", steps,
             summary.running_average(curves["gd_loss"], window), {"color": "black"}),
      Series("central flow: predicted time-average", steps, curves["flow_predicted_loss"],
             {"color": "tab:blue", "linestyle": "--"}),
      Series("gradient flow", steps, curves["gradient_flow_loss"],
             {"color": "tab:red", "linestyle": "-."})], log_y=True, vlines=marks)
  eigenvalues = np.asarray(curves["flow_eigenvalues"])
  k = eigenvalues.shape[1]
  flow = [Series("central flow: S" if i == 0 else f"central flow: λ{i + 1}", steps,
                 eigenvalues[:, i], {"color": colour(i, k), "linestyle": "--"})
          for i in range(k)]
  outside = np.asarray(curves["flow_outsider_eigenvalue"], np.float64)      # −inf where n ≤ k
  flow.append(Series(f"central flow: λ{k + 1} (outside the block)", steps,
                     np.where(np.isfinite(outside), outside, np.nan),
                     {"color": "grey", "linestyle": ":", "linewidth": 0.8}))
  sharpness = Panel("(b) sharpness", "GD step", "eigenvalue",
                    [Series("GD: λ1", steps, curves["gd_lambda1"],
                            {"color": "lightgrey", "linewidth": 0.8}), *flow],
                    hlines=[HLine("2/η", edge, {"color": "black", "linestyle": ":"})],
                    vlines=marks)
  travelled = np.asarray(curves["gd_displacement"], np.float64)
  safe = np.where(travelled > 0, travelled, np.nan)
  distance = Panel("(c) distance from GD", "GD step", "‖w_GD − w‖ / ‖w_GD − w_0‖", [
      Series("central flow", steps, np.asarray(curves["distance_flow"]) / safe,
             {"color": "tab:blue"}),
      Series("gradient flow", steps, np.asarray(curves["distance_gradient_flow"]) / safe,
             {"color": "tab:red"})], vlines=marks)
  return [loss, sharpness, distance]
