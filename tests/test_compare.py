"""`python -m sam_edge.compare`: summary rows, seed bands and phase cells from hand-made runs
(our pickle format and the reference's raw.txt), checked against hand computations."""

import csv
import math
import pickle

import numpy as np
import pytest

from sam_edge import compare, records
from sam_edge.studies import overlay, phase, report, sources, summary

ETA, RHO = 0.05, 0.1                      # the reference run's step size and SAM radius


def sam_edge(eta: float, rho: float, g: float) -> float:
  """The paper's (g / 2ρ)(sqrt(1 + 8ρ/(ηg)) − 1), in float64 (no cancellation at these sizes)."""
  return g / (2 * rho) * (math.sqrt(1 + 8 * rho / (eta * g)) - 1)


def write_reference(path, n: int = 6) -> list[list[float]]:
  """A raw.txt in the reference's 8-column format; returns its rows."""
  rows = []
  for i in range(n):
    g = 2.0 / (i + 1)
    rows.append([10.0 * i, 30.0 + i, 2 / ETA, sam_edge(ETA, RHO, g), g, 3.0 - 0.1 * i,
                 0.1 * i, 0.05 * i])
  path.write_text("".join(" ".join(repr(v) for v in row) + "\n" for row in rows))
  return rows


def make_pickle(path, *, n=10, edge_key=True, final=True, shift=0.0, stopped="max_steps",
                **config):
  """A raw pickle of ours: λ1 = 1 + i + shift at step i, edge 10 (or `sam_edge` 10 in the
  older format without `edge`), final test_loss 1.5 + shift; `config` may set rho (0),
  step_size (ETA) and seed (0)."""
  config = {"rho": 0.0, "step_size": ETA, "seed": 0, **config}
  step_size = config["step_size"]
  recs = []
  for i in range(n):
    r = {"step": i, "time": 0.5 * i, "eigenvalues": [1.0 + i + shift], "residuals": [0.0],
         "hvps": 5, "two_over_eta": 2 / step_size, "sam_edge": 10.0, "grad_norm": 1.0,
         "loss": 2.0 / (i + 1), "g_alignment": 0.5, "sg_alignment": 0.5, "seconds": 0.01}
    if edge_key:
      r.update(edge=10.0, edge_label="SAM edge")
    recs.append(r)
  raw = {"config": {**config, "raw_data_output": str(path), "checkpoint_dir": None},
         "records": recs,
         "losses": {"step": list(range(n)), "loss": [2.0 / (s + 1) for s in range(n)]},
         "final": ({"steps": n, "stopped_because": stopped, "test_loss": 1.5 + shift}
                   if final else {})}
  records.write_raw(str(path), raw)
  return raw


def read_csv(path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_reference_raw_txt_with_our_pickle(tmp_path, capsys):
  ref_rows = write_reference(tmp_path / "raw.txt")
  make_pickle(tmp_path / "ours.pkl")
  code = compare.main([str(tmp_path / "raw.txt"), str(tmp_path / "ours.pkl"),
                       f"--out={tmp_path / 'cmp'}"])
  assert code == 0, capsys.readouterr().err
  rows = read_csv(tmp_path / "cmp" / "summary.csv")
  assert list(rows[0]) == ["run", "rho", "steps", "stopped_because", "test_error", "test_loss",
                           "final_lambda1", "median_lambda1_over_edge", "diverged",
                           "final_train_loss", "source"]
  ref, ours = rows
  # The last epoch's training loss: the last step's (no training_examples to size an epoch).
  assert ref["final_train_loss"] == "" and float(ours["final_train_loss"]) == 2.0 / 10
  # The reference: ρ recovered from 2/η, SAM-edge and ‖g‖; second half by training time
  # (t >= 25 s: the lines at 30, 40, 50 s), median of λ1 / SAM-edge there.
  assert float(ref["rho"]) == pytest.approx(RHO)
  halves = [row[1] / row[3] for row in ref_rows if row[0] >= ref_rows[-1][0] / 2]
  assert float(ref["median_lambda1_over_edge"]) == pytest.approx(sorted(halves)[1], rel=1e-12)
  assert float(ref["final_lambda1"]) == ref_rows[-1][1]
  assert (ref["steps"], ref["stopped_because"], ref["test_loss"], ref["diverged"]) == (
      "", "", "", "false")
  # Ours: steps 5..9 (>= 10/2), λ1/edge = (1 + i) / 10, median at i = 7.
  assert float(ours["rho"]) == 0.0
  assert float(ours["median_lambda1_over_edge"]) == pytest.approx(0.8)
  assert (ours["steps"], ours["stopped_because"], ours["test_loss"], ours["diverged"],
          ours["test_error"]) == ("10", "max_steps", "1.5", "false", "")
  for name in ("lambda1_over_edge.pdf", "loss_curves.pdf", "metric_vs_rho.pdf"):
    assert (tmp_path / "cmp" / name).read_bytes().startswith(b"%PDF")
  assert "summary of 2 runs" in capsys.readouterr().out


def test_reference_step_size_and_rho_inferred(tmp_path):
  write_reference(tmp_path / "raw.txt")
  run = sources.read_reference(str(tmp_path / "raw.txt"), "ref")
  assert run.config == {"step_size": pytest.approx(ETA), "rho": pytest.approx(RHO)}
  assert [r["step"] for r in run.records] == [None] * 6
  # With a reference run among them, the overlays' x axis is training time, and says why.
  assert overlay.resolve_x_axis([run], "auto") == "time"
  assert "no steps" in overlay.x_label([run], "time")
  assert overlay.ratio_curve(run, "time")[0].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
  assert overlay.edge_labels([run]) == ["SAM edge (reference)"]


def test_older_pickle_without_edge_uses_sam_edge(tmp_path):
  make_pickle(tmp_path / "old.pkl", edge_key=False)
  run = sources.read_pickle(str(tmp_path / "old.pkl"), "old")
  assert summary.median_ratio_second_half(run) == pytest.approx(0.8)
  recs = run.records
  recs[-1]["edge"] = None                          # no closed form: left out of the median
  assert summary.ratio(recs[-1]) is None
  assert summary.median_ratio_second_half(run) == pytest.approx(0.75)


def test_values_compare_equal_across_sources():
  typed = sources.Run("a", "a", "pending", {}, values={"rho": "0", "seed": "1", "width": "1e3"})
  stored = sources.Run("b", "b", "pickle", {"rho": 0.0, "seed": 1, "width": 1000, "fast": True})
  for flag in ("rho", "seed", "width"):
    assert summary.value_of(typed, flag) == summary.value_of(stored, flag)
  assert summary.value_of(stored, "fast") == "True" and summary.canonical("0.05") == "0.05"
  assert summary.choose_axes([typed, stored], []) == []


def test_half_finished_and_diverged_runs(tmp_path):
  make_pickle(tmp_path / "half.pkl", final=False)
  make_pickle(tmp_path / "div.pkl", stopped="diverged")
  half = summary.row(sources.read_pickle(str(tmp_path / "half.pkl"), "half"), [])
  div = summary.row(sources.read_pickle(str(tmp_path / "div.pkl"), "div"), [])
  assert (half["steps"], half["stopped_because"], half["diverged"]) == (None, None, None)
  assert half["median_lambda1_over_edge"] == pytest.approx(0.8)   # by its last step, 9
  assert div["diverged"] is True
  text = summary.table_text(summary.columns([], [half]), [half])
  assert text.splitlines()[1].startswith("half,,,,,10.0,0.8,,")


def test_seeds_form_a_band(tmp_path):
  make_pickle(tmp_path / "s0.pkl", seed=0, shift=0.0)
  make_pickle(tmp_path / "s1.pkl", seed=1, shift=2.0)
  runs, axes = sources.read_paths([str(tmp_path / "s0.pkl"), str(tmp_path / "s1.pkl")])
  axes = summary.choose_axes(runs, axes)
  assert axes == ["seed"]
  groups = overlay.group_styles(runs, axes)
  assert len(groups) == 1 and "2 seeds" in next(iter(groups.values()))["label"]
  x, mean, lo, hi = overlay.mean_band([overlay.ratio_curve(r, "step") for r in runs])
  assert x.tolist() == list(range(10))
  np.testing.assert_allclose(mean, (np.arange(10) + 2.0) / 10)
  np.testing.assert_allclose(hi - lo, np.full(10, 0.2))


def test_band_on_different_grids_interpolates_inside_the_common_range():
  a = (np.array([0.0, 2.0, 4.0]), np.array([0.0, 2.0, 4.0]))
  b = (np.array([1.0, 3.0, 5.0]), np.array([10.0, 10.0, 10.0]))
  x, mean, lo, hi = overlay.mean_band([a, b])
  assert x.tolist() == [1.0, 2.0, 3.0, 4.0]
  np.testing.assert_allclose(mean, [5.5, 6.0, 6.5, 7.0])
  np.testing.assert_allclose(lo, [1.0, 2.0, 3.0, 4.0])


def test_phase_cells_average_seeds_and_leave_missing_cells_empty(tmp_path, capsys):
  settings = [(0.0, 0.1, 0, 0.0), (0.0, 0.1, 1, 1.0), (0.1, 0.1, 0, 2.0), (0.0, 0.2, 0, 4.0)]
  paths = []
  for k, (rho, eta, seed, shift) in enumerate(settings):
    paths.append(str(tmp_path / f"r{k}.pkl"))
    make_pickle(tmp_path / f"r{k}.pkl", rho=rho, step_size=eta, seed=seed, shift=shift)
  runs, _ = sources.read_paths(paths)
  axes = summary.choose_axes(runs, [])
  assert axes == ["rho", "seed", "step_size"]
  rows = [summary.row(r, axes) for r in runs]
  xs, ys, cells = phase.grid(rows, "rho", "step_size", "test_loss")
  assert (xs, ys) == (["0", "0.1"], ["0.1", "0.2"])
  np.testing.assert_allclose(cells, [[1.5 + 0.5, 1.5 + 2.0], [1.5 + 4.0, np.nan]])
  code = compare.main(paths + [f"--out={tmp_path / 'cmp'}", "--phase_axes=rho,step_size"])
  assert code == 0
  assert (tmp_path / "cmp" / report.PHASE_PDF).read_bytes().startswith(b"%PDF")
  assert {p.name for p in (tmp_path / "cmp").iterdir()} == {
      "summary.csv", "cells.csv", "lambda1_over_edge.pdf", "loss_curves.pdf", "metric_vs_rho.pdf",
      "metric_vs_step_size.pdf", "phase.pdf"}
  capsys.readouterr()


@pytest.mark.parametrize("extra, message", [
    (["--phase_axes=rho,width"], "width is not a swept axis"),
    (["--phase_axes=rho,rho"], "two different axes"),
    (["--phase_axes=rho,step_size", "--phase_metric=accuracy"], "--phase_metric must be"),
])
def test_bad_phase_options_are_one_line(tmp_path, capsys, extra, message):
  make_pickle(tmp_path / "a.pkl", rho=0.0, step_size=0.1)
  make_pickle(tmp_path / "b.pkl", rho=0.1, step_size=0.2)
  code = compare.main([str(tmp_path / "a.pkl"), str(tmp_path / "b.pkl"),
                       f"--out={tmp_path / 'cmp'}", *extra])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and message in err[0] and err[0].startswith("compare: error")


def test_unreadable_sources_are_one_line(tmp_path, capsys):
  (tmp_path / "bad.txt").write_text("1 2 3\n")
  (tmp_path / "bad.pkl").write_bytes(pickle.dumps([1, 2]))
  for path, message in ((tmp_path / "bad.txt", "line 1 has 3 columns"),
                        (tmp_path / "bad.pkl", "not a raw pickle"),
                        (tmp_path / "missing.pkl", "no such file")):
    assert compare.main([str(path), f"--out={tmp_path / 'cmp'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
  assert compare.main([str(tmp_path / "bad.txt")]) == 2
  assert "--out=DIR is required" in capsys.readouterr().err


def test_final_train_loss_is_the_mean_over_the_last_epoch():
  run = lambda batch, losses: sources.Run("r", "r", "pickle", {"batch_size": batch},
                                          losses=(list(range(len(losses))), losses),
                                          final={"training_examples": 25})
  assert summary.final_train_loss(run(10, [6.0, 5.0, 4.0, 3.0, 2.0, 1.0])) == 2.0   # ⌈25/10⌉ = 3
  assert summary.final_train_loss(run(25, [6.0, 5.0, 4.0])) == 4.0                    # full batch
  assert summary.final_train_loss(run(10, [1.0, 2.0])) == 1.5                         # < an epoch
  assert summary.final_train_loss(run(10, [1.0, float("nan"), 2.0])) is None
  assert summary.final_train_loss(run(10, [])) is None
