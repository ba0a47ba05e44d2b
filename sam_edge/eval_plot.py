"""Test metrics beside the training loss (`--eval_curve_output`): the training loss and the test
loss of every evaluation on one panel, the test error on a second, against the step.

Reads a run's raw data (`losses`, and `evaluations`: {step, time, test_loss, test_error, ...});
drawn with `plots.draw_on` on an explicit Figure and written atomically; no jax.
"""

from typing import Any, Mapping

from matplotlib.figure import Figure

from sam_edge import plots


def specs(raw: Mapping[str, Any], title: str) -> list[plots.PlotSpec]:
  evaluations = list(raw.get("evaluations") or [])
  steps, losses = plots.loss_points(raw)
  eval_steps = [e["step"] for e in evaluations]
  loss_series = [plots.Series("training loss (the batch of each step)", steps, losses,
                              {"color": "tab:blue", "linewidth": 0.8})]
  if any("test_loss" in e for e in evaluations):
    loss_series.append(plots.Series("test loss", eval_steps,
                                    [e.get("test_loss") for e in evaluations],
                                    {"color": "tab:orange", "linewidth": 1.6}))
  out = [plots.PlotSpec(title=f"{title}: loss", xlabel=plots.XLABEL, ylabel="loss",
                        series=loss_series, log_y=plots.positive_log_y(loss_series),
                        legend_loc="upper right")]
  if any("test_error" in e for e in evaluations):
    out.append(plots.PlotSpec(
        title=f"{title}: test error", xlabel=plots.XLABEL, ylabel="test error",
        series=[plots.Series("test error", eval_steps, [e.get("test_error") for e in evaluations],
                             {"color": "tab:red"})], legend_loc="upper right"))
  return out


def eval_figure(raw: Mapping[str, Any], title: str) -> Figure:
  return plots.stacked_figure(specs(raw, title))
