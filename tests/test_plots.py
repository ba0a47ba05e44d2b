"""The run's figures (`plots.run`) drawn by the figure engine (`plots.figure`), and the writer
that writes the figures whose outputs are set."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from sam_edge.plots import figure
from sam_edge.plots import run as run_figures
from sam_edge.plots.spec import Heatmap, HLine, Panel, Series
from sam_edge.run import loop, outputs

TITLE = "mnist MLP, ρ=0.1, η=0.01"
NAMES = ("eigs_curve", "eigs_se_only", "alignment_curve", "loss_curve")


def make_raw(k: int, n: int = 20, *, nans: bool = False,
             with_losses: bool = True) -> dict:
  """A synthetic run with k eigenvalues and n records."""
  recs = []
  for i in range(n):
    top = 10.0 + 5.0 * i
    eigs = [top / (j + 1) for j in range(k)]
    rec = {
        "step": 10 * i, "time": 0.1 * i, "eigenvalues": eigs,
        "residuals": [1e-3] * k, "hvps": 20, "two_over_eta": 200.0,
        "sam_edge": 150.0 - i, "grad_norm": 1.0 / (i + 1),
        "loss": 2.0 / (i + 1), "g_alignment": 0.1 + 0.02 * i,
        "sg_alignment": 0.9 - 0.02 * i, "seconds": 0.01,
    }
    recs.append(rec)
  if nans and n:
    recs[n // 2]["eigenvalues"][0] = math.nan
    recs[n // 2]["sam_edge"] = math.inf
    recs[-1]["loss"] = math.nan
    recs[-1]["g_alignment"] = math.nan
    recs[-1]["eigenvalues"] = [math.nan] * k
  raw = {"config": {"lr": 0.01, "rho": 0.1}, "records": recs, "final": {}}
  if with_losses:
    steps = list(range(10 * n))
    losses = [2.0 / (s + 1) for s in steps]
    if nans and losses:
      losses[-1] = math.inf
      losses[len(losses) // 2] = math.nan
    raw["losses"] = {"step": steps, "loss": losses}
  return raw


def _outputs(folder) -> dict[str, str]:
  return {name: str(folder / f"{name}.pdf") for name in NAMES}


def writer(paths: dict[str, str], raw) -> outputs.Writer:
  """A run's writer with the outputs `paths` ({name: path}) over the records of `raw`."""
  progress = loop.Progress(records=raw["records"],
                           losses=raw.get("losses") or {"step": [], "loss": []})
  return outputs.Writer({f"{name}_output": path for name, path in paths.items()}, TITLE,
                        raw.get("config") or {}, progress, {})


def _write(raw, folder) -> dict[str, str]:
  paths = _outputs(folder)
  writer(paths, raw).plots(raw.get("final") or {})
  return paths


def _assert_pdfs(paths: dict[str, str]) -> None:
  for path in paths.values():
    with open(path, "rb") as f:
      assert f.read(5) == b"%PDF-", path
    assert os.path.getsize(path) > 500


@pytest.mark.parametrize("k", [1, 3])
def test_write_all_plots(tmp_path, k):
  paths = _write(make_raw(k), tmp_path)
  _assert_pdfs(paths)
  assert sorted(os.listdir(tmp_path)) == sorted(f"{n}.pdf" for n in NAMES)


def test_write_all_plots_with_nans(tmp_path):
  _assert_pdfs(_write(make_raw(3, nans=True), tmp_path))


def test_write_all_plots_zero_records(tmp_path):
  raw = {"config": {}, "records": [], "final": {}}
  _assert_pdfs(_write(raw, tmp_path))


def test_write_all_plots_skips_empty_outputs(tmp_path):
  path = str(tmp_path / "loss.pdf")
  writer({"loss_curve": path, "eigs_se_only": ""}, make_raw(2)).plots({})
  assert os.listdir(tmp_path) == ["loss.pdf"]


def _legend_labels(fig) -> list[str]:
  (ax,) = fig.axes
  legend = ax.get_legend()
  assert legend is not None
  return [t.get_text() for t in legend.get_texts()]


def _check_labels(fig) -> None:
  (ax,) = fig.axes
  assert ax.get_title() == TITLE
  assert ax.get_xlabel() == "training step"
  assert ax.get_ylabel()


@pytest.mark.parametrize("k", [1, 3])
def test_eigs_figure_legend(k):
  fig = build(run_figures.eigs_panel(make_raw(k), TITLE))
  labels = _legend_labels(fig)
  assert len(labels) == k + 2
  assert labels[0] == "λ1 (top Hessian eigenvalue)"
  assert labels[1:k] == [f"λ{i}" for i in range(2, k + 1)]
  assert "SAM edge" in labels and "2/η" in labels
  _check_labels(fig)
  assert fig.axes[0].get_ylabel() == "Hessian eigenvalue"
  colours = [line.get_color() for line in fig.axes[0].get_lines()[:k]]
  assert len(set(colours)) == k


@pytest.mark.parametrize("k", [1, 3])
def test_eigs_se_only_has_no_two_over_eta(k):
  fig = build(run_figures.eigs_panel(make_raw(k), TITLE, with_two_over_eta=False))
  labels = _legend_labels(fig)
  assert len(labels) == k + 1
  assert "2/η" not in labels
  _check_labels(fig)


def test_eigs_two_over_eta_is_horizontal_line():
  spec = run_figures.eigs_panel(make_raw(2), TITLE)
  assert [h.y for h in spec.hlines] == [200.0]


def test_eigs_with_nans_drops_points():
  raw = make_raw(3, n=20, nans=True)
  fig = build(run_figures.eigs_panel(raw, TITLE))
  for line in fig.axes[0].get_lines():
    assert np.all(np.isfinite(np.asarray(line.get_ydata(), dtype=float)))
  lam1 = fig.axes[0].get_lines()[0]
  assert len(lam1.get_xdata()) == 18  # Two records had a NaN λ1.


def test_alignment_figure():
  fig = build(run_figures.alignment_panel(make_raw(2), TITLE))
  labels = _legend_labels(fig)
  assert labels == ["|cos(∇L, v1)|", "|cos(∇L_SAM, v1)|"]
  assert fig.axes[0].get_ylim() == (0.0, 1.0)
  _check_labels(fig)


def test_loss_figure_prefers_losses_and_uses_log_scale():
  raw = make_raw(1, n=5)
  fig = build(run_figures.loss_panel(raw, TITLE))
  (line,) = fig.axes[0].get_lines()
  assert len(line.get_xdata()) == 50
  assert fig.axes[0].get_yscale() == "log"
  assert _legend_labels(fig)
  _check_labels(fig)


def test_loss_figure_from_records_linear_when_not_positive():
  raw = make_raw(1, n=5, with_losses=False)
  raw["records"][2]["loss"] = 0.0
  fig = build(run_figures.loss_panel(raw, TITLE))
  (line,) = fig.axes[0].get_lines()
  assert len(line.get_xdata()) == 5
  assert fig.axes[0].get_yscale() == "linear"


def test_zero_records_figures_say_so():
  """No measurements: labelled axes saying "no measurements", not an empty legend."""
  raw = {"config": {}, "records": [], "final": {}}
  for out in run_figures.figure_outputs()[:4]:
    name = out.flag.removesuffix("_output")
    fig = figure.build(out.panels(raw, TITLE))
    _check_labels(fig)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == (["no training steps"] if name == "loss_curve" else ["no measurements"])
    assert fig.axes[0].get_legend() is None


def test_unconverged_points_are_hollow_with_a_legend_entry():
  raw = make_raw(2, n=4)
  raw["records"][1]["converged"] = False
  raw["records"][3]["converged"] = False
  fig = build(run_figures.eigs_panel(raw, TITLE))
  assert run_figures.UNCONVERGED_LABEL in _legend_labels(fig)
  hollow = [line for line in fig.axes[0].get_lines() if line.get_markerfacecolor() == "none"]
  assert len(hollow) == 2                                       # one per eigenvalue
  steps = sorted(float(x) for line in hollow for x in line.get_xdata())
  assert steps == [10.0, 10.0, 30.0, 30.0]
  converged = make_raw(2, n=4)
  fig = build(run_figures.eigs_panel(converged, TITLE))
  assert run_figures.UNCONVERGED_LABEL not in _legend_labels(fig)


def test_magnitudes_are_labelled_as_such():
  raw = make_raw(1, n=3)
  for r in raw["records"]:
    r["eigenvalue_kind"] = "magnitude"
  assert "|λ1|" in _legend_labels(build(run_figures.eigs_panel(raw, TITLE)))[0]


def test_diverged_run_marks_the_step_on_the_loss_plot():
  raw = make_raw(1, n=5)
  raw["final"] = {"stopped_because": "diverged", "diverged_at_step": 3}
  fig = build(run_figures.loss_panel(raw, TITLE))
  assert "diverged at step 3" in _legend_labels(fig)


def test_thin_points_keeps_extremes():
  x = np.arange(100_000, dtype=float)
  y = np.ones_like(x)
  y[54_321] = 1e6
  y[7] = -5.0
  tx, ty = figure.thin_points(x, y, max_points=1000)
  assert len(tx) <= 1000
  assert 1e6 in ty and -5.0 in ty
  assert np.all(np.diff(tx) > 0)


def test_plot_curves_writes_pdf(tmp_path):
  path = str(tmp_path / "c.pdf")
  fig = figure.write(path, [Panel("t", "x", "y", [Series("a", [0, 1, 2], [1.0, math.nan, 3.0])],
                                 hlines=[HLine("h", 2.0), HLine("bad", math.nan)])])
  assert _legend_labels(fig) == ["a", "h"]
  with open(path, "rb") as f:
    assert f.read(4) == b"%PDF"
  assert os.listdir(tmp_path) == ["c.pdf"]


def test_import_does_not_touch_pyplot_or_jax():
  code = ("import sys\nimport sam_edge.plots.run, sam_edge.plots.spec, sam_edge.records\n"
          "bad = [m for m in ('jax', 'matplotlib') if m in sys.modules]\n"
          "assert not bad, bad\nimport sam_edge.plots.figure\n"
          "bad = [m for m in ('jax', 'matplotlib.pyplot') if m in sys.modules]\n"
          "assert not bad, bad\n")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, "-c", code], cwd=repo, check=True,
                 timeout=60)


def test_the_method_edge_is_drawn_with_its_formula():
  raw = make_raw(1, n=4)
  for r in raw["records"]:
    r.update(edge=3.8 / 0.1, edge_label="(2+2β)/η, β=0.9", operator="hessian")
  labels = _legend_labels(build(run_figures.eigs_panel(raw, TITLE)))
  assert "(2+2β)/η, β=0.9" in labels and run_figures.SAM_EDGE_LABEL not in labels
  for r in raw["records"]:                                  # no closed form: no edge at all
    r.update(edge=None, edge_label=None)
  labels = _legend_labels(build(run_figures.eigs_panel(raw, TITLE)))
  assert not any("edge" in label.lower() for label in labels)
  for r in raw["records"]:                                  # SAM: the reference's SAM edge
    r.update(edge=r["sam_edge"], edge_label="SAM-edge")
  assert run_figures.SAM_EDGE_LABEL in _legend_labels(build(run_figures.eigs_panel(raw, TITLE)))


def test_adam_figures_say_preconditioned():
  raw = make_raw(1, n=3)
  for r in raw["records"]:
    r.update(operator="preconditioned_hessian", edge=38.0, edge_label="2(1+β1)/((1−β1)η)")
  fig = build(run_figures.eigs_panel(raw, TITLE))
  assert "preconditioned" in fig.axes[0].get_ylabel()


def build(panel):
  """One panel drawn by the engine."""
  return figure.build([panel])


def test_cell_positions_interpolate_between_cells_and_extrapolate_past_them():
  np.testing.assert_allclose(figure.cell_positions([0.5, 1.0, 2.0], [0.5, 0.75, 1.5, 2.0]),
                             [0.0, 0.5, 1.5, 2.0])
  np.testing.assert_allclose(figure.cell_positions([0.5, 1.0, 2.0], [0.0, 3.0]), [-1.0, 3.0])
  np.testing.assert_allclose(figure.cell_positions([0.3], [0.3, 0.4]), [0.0, np.nan])


def test_heatmap_curves_are_drawn_in_the_axes_values_and_clipped_to_the_map():
  boundary = Series("α = 2(1+β)", [1.0, 2.0, 3.0], [-0.5, 0.0, 0.5], {"color": "black"})
  far = Series("β = 1", [0.5, 4.0], [1.0, 1.0])
  h = Heatmap("b=10", "α", "β", ["0.5", "1", "2"], ["-0.5", "0", "0.5"], np.zeros((3, 3)),
              xvalues=[0.5, 1.0, 2.0], yvalues=[-0.5, 0.0, 0.5], curves=[boundary, far],
              annotate=False)
  ax = figure.build([h]).axes[0]
  lines = {line.get_label(): line for line in ax.get_lines()}
  np.testing.assert_allclose(lines["α = 2(1+β)"].get_xdata(), [1.0, 2.0, 3.0])
  np.testing.assert_allclose(lines["α = 2(1+β)"].get_ydata(), [0.0, 1.0, 2.0])
  assert ax.get_xlim() == (-0.5, 2.5) and ax.get_ylim() == (-0.5, 2.5)   # β = 1 lies above
  assert not ax.texts                                                     # no annotations
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ["α = 2(1+β)", "β = 1"]
