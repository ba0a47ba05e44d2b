"""The spectral-density figure of the density kind: curves chosen from the records, a log y axis,
written by the figure engine."""

import pickle

import numpy as np

from sam_edge.curvature.kinds import density as density_plot
from sam_edge.plots import figure


def raw_with_densities(count, with_gaps=False):
  rng = np.random.default_rng(0)
  records = []
  for i in range(count):
    nodes = np.sort(rng.normal(size=(2, 5)), axis=1) * (1 + i)
    weights = rng.uniform(size=(2, 5))
    weights /= weights.sum(axis=1, keepdims=True)
    record = {"step": 10 * i, "eigenvalues": [1.0]}
    if not (with_gaps and i % 2):
      record["density"] = {"nodes": nodes.tolist(), "weights": weights.tolist()}
    records.append(record)
  # Through a pickle, as a run writes it: plain lists.
  return pickle.loads(pickle.dumps({"config": {}, "records": records}))


def test_spread_keeps_first_and_last():
  assert density_plot.spread(3, 4) == [0, 1, 2]
  assert density_plot.spread(10, 4) == [0, 3, 6, 9]
  assert density_plot.spread(0, 4) == []


def test_spec_draws_a_few_measurements_on_one_grid_with_a_log_axis():
  raw = raw_with_densities(12, with_gaps=True)           # 6 records hold a density
  (spec,) = density_plot.density_panels(raw, "run")
  assert spec.log_y and spec.xlabel == density_plot.XLABEL
  assert [s.label for s in spec.series] == ["step 0", "step 40", "step 60", "step 100"]
  grids = [np.asarray(s.xs) for s in spec.series]
  assert all(np.array_equal(g, grids[0]) for g in grids)
  for s in spec.series:                                  # each curve is a probability density
    assert abs(np.trapezoid(s.ys, s.xs) - 1.0) < 1e-3
  peak = max(np.max(s.ys) for s in spec.series)
  assert spec.ylim == (peak * density_plot.FLOOR, peak * 2.0)


def test_writes_a_pdf_and_nothing_without_densities(tmp_path):
  path = tmp_path / "density.pdf"
  (output,) = density_plot.DENSITY.figures
  fig = figure.write(str(path), output.panels(raw_with_densities(3), "run"))
  assert path.read_bytes().startswith(b"%PDF")
  assert fig.axes[0].get_yscale() == "log"
  assert not list(tmp_path.glob(".*.tmp"))
  assert output.panels({"records": [{"step": 0}]}, "run") == []
