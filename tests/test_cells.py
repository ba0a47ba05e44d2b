"""Reporting over seeds: the 95% t-interval, cells.csv, the trend figures' error bars and the
selection of ρ on a validation metric (`compare --select_by --select_over`), from hand-made
numbers, summary rows and run pickles (no training)."""

import csv
import math
import os

import numpy as np
import pytest

from sam_edge import compare, records
from sam_edge.plots import figure
from sam_edge.studies import cells, intervals, selection, sources, summary, trends
from tests import test_outputs_doc

AXES = ["rho", "seed", "mlp_width"]
# (mlp_width, rho) -> (validation errors, test errors) of seeds 0 and 1. At width 16 the lowest
# validation error is at ρ = 0.05 and the lowest test error at ρ = 0.1; at width 64 the reverse:
# a selection that looked at the test error would choose the other ρ in both.
ERRORS = {("16", "0.05"): ([0.10, 0.12], [0.30, 0.32]),
          ("16", "0.1"): ([0.20, 0.22], [0.20, 0.22]),
          ("64", "0.05"): ([0.30, 0.30], [0.05, 0.07]),
          ("64", "0.1"): ([0.10, 0.14], [0.40, 0.44])}


def hand_rows() -> list[dict]:
  """Summary rows of ERRORS (test_loss = 10 · test error)."""
  return [{"run": f"w{w}r{rho}s{s}", "rho": rho, "seed": str(s), "mlp_width": w,
           "validation_error": val[s], "test_error": test[s], "test_loss": 10 * test[s]}
          for (w, rho), (val, test) in ERRORS.items() for s in (0, 1)]


def write_runs(folder, validation: bool = True) -> list[str]:
  """One raw pickle per run of ERRORS (two records, two steps each); returns their paths."""
  paths = []
  for row in hand_rows():
    final = {"steps": 2, "stopped_because": "max_steps", "test_error": row["test_error"],
             "test_loss": row["test_loss"]}
    if validation:
      final.update(validation_error=row["validation_error"], validation_loss=0.5)
    raw = {"config": {"rho": float(row["rho"]), "seed": int(row["seed"]),
                      "mlp_width": int(row["mlp_width"]), "step_size": 0.1},
           "records": [{"step": s, "eigenvalues": [5.0 + s], "edge": 10.0, "loss": 1.0 / (s + 1)}
                       for s in (0, 1)],
           "losses": {"step": [0, 1], "loss": [1.0, 0.5]}, "final": final}
    paths.append(str(folder / f"{row['run']}.pkl"))
    records.write_raw(paths[-1], raw)
  return paths


def read_csv(path) -> list[dict]:
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize("dof, t", [(1, 12.7062), (4, 2.7764), (9, 2.2622), (29, 2.0452)])
def test_t_quantile_matches_the_tables(dof, t):
  assert intervals.t_quantile(0.975, dof) == pytest.approx(t, abs=5e-5)
  assert intervals.t_quantile(0.025, dof) == pytest.approx(-t, abs=5e-5)


def test_t_quantile_refuses_no_degrees_of_freedom():
  with pytest.raises(ValueError, match="dof > 0"):
    intervals.t_quantile(0.975, 0)


def test_mean_std_and_t_interval_of_hand_made_numbers():
  s = intervals.stats([1.0, 2.0, 3.0, 4.0, 5.0, float("nan"), None])   # NaN and None left out
  # Σ(x − 3)² = 10, s² = 10/4, half-width t_{0.975,4} · s / √5.
  assert (s.n, s.mean) == (5, 3.0)
  assert s.std == pytest.approx(math.sqrt(2.5), rel=1e-12)
  assert s.ci95 == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), rel=2e-5)
  assert (s.lower, s.upper) == (pytest.approx(3 - s.ci95), pytest.approx(3 + s.ci95))
  pair = intervals.stats([0.40, 0.44])
  assert pair.ci95 == pytest.approx(12.7062 * 0.02 * math.sqrt(2) / math.sqrt(2), rel=1e-5)
  assert intervals.stats([7.0]) == (1, 7.0, None, None)
  assert intervals.stats([7.0]).lower == 7.0
  assert intervals.stats([]) == (0, None, None, None)


def test_cells_csv_of_hand_made_rows(tmp_path):
  rows = hand_rows()[:4] + [
      {"run": "one", "rho": "0.1", "seed": "0", "mlp_width": "256", "test_error": 0.5,
       "test_loss": None, "cka": 0.9},
      {"run": "blank", "rho": "0.1", "seed": "1", "mlp_width": "256", "test_error": None,
       "test_loss": None, "cka": 0.9}]
  for r in rows[:4]:
    r["cka"] = 0.8                                   # one value per cell, carried by each run
  path = tmp_path / "cells.csv"
  cells.write_csv(str(path), rows, AXES)
  got = read_csv(path)
  stats = lambda m: [f"{m}_{s}" for s in ("mean", "std", "n", "ci95")]
  # summary.csv's metric columns: the fixed ones (empty here), then the optional ones some row
  # has.
  assert list(got[0]) == ["rho", "mlp_width", "n", *stats("steps"), *stats("test_error"),
                          *stats("test_loss"), *stats("final_lambda1"),
                          *stats("median_lambda1_over_edge"), *stats("validation_error"),
                          *stats("cka")]
  assert (got[0]["steps_n"], got[0]["steps_mean"]) == ("0", "")
  # Cells in axis order: ρ = 0.05 before 0.1; widths 16 before 256.
  assert [(c["rho"], c["mlp_width"], c["n"]) for c in got] == [
      ("0.05", "16", "2"), ("0.1", "16", "2"), ("0.1", "256", "2")]
  first = got[0]
  assert float(first["test_error_mean"]) == pytest.approx(0.31)
  assert float(first["test_error_std"]) == pytest.approx(0.02 / math.sqrt(2))
  assert float(first["test_error_ci95"]) == pytest.approx(12.7062 * 0.01, rel=1e-5)
  assert float(first["validation_error_mean"]) == pytest.approx(0.11)
  assert (first["test_error_n"], first["cka_mean"], first["cka_std"], first["cka_ci95"]) == (
      "2", "0.8", "", "")                           # between runs: no spread over seeds
  last = got[2]                                     # one finite test error of two runs
  assert (last["n"], last["test_error_n"], last["test_error_mean"], last["test_error_std"],
          last["test_error_ci95"]) == ("2", "1", "0.5", "", "")
  assert (last["test_loss_n"], last["test_loss_mean"]) == ("0", "")


def test_selection_uses_the_validation_metric_not_the_test_metric():
  rows = hand_rows()
  table = cells.table(rows, AXES)
  chosen = selection.select(table, AXES, cells.metrics(rows, AXES), "validation_error", "rho")
  assert chosen.others == ["mlp_width"]
  assert [(r["mlp_width"], r["rho"]) for r in chosen.rows] == [("16", "0.05"), ("64", "0.1")]
  assert [r["test_error_mean"] for r in chosen.rows] == [pytest.approx(0.31),
                                                         pytest.approx(0.42)]
  assert chosen.rows[1]["test_error_ci95"] == pytest.approx(12.7062 * 0.02, rel=1e-5)
  assert chosen.reported == ["validation_error", "test_error", "test_loss"]
  assert chosen.columns()[:4] == ["mlp_width", "rho", "n", "validation_error_mean"]
  by_test = selection.select(table, AXES, cells.metrics(rows, AXES), "test_error", "rho")
  assert [r["rho"] for r in by_test.rows] == ["0.1", "0.05"]
  text = selection.table(chosen)
  assert "rho chosen per setting of mlp_width by the lowest mean validation_error" in text
  assert "0.42 ± 0.254" in text


def test_selection_ties_go_to_the_first_value_and_empty_settings_stay():
  rows = [{"rho": rho, "seed": "0", "mlp_width": w, "validation_error": v, "test_error": 0.1}
          for rho, w, v in (("0.1", "8", 0.2), ("0.05", "8", 0.2), ("0.1", "9", None))]
  table = cells.table(rows, AXES)
  chosen = selection.select(table, AXES, cells.metrics(rows, AXES), "validation_error", "rho")
  assert [(r["mlp_width"], r["rho"]) for r in chosen.rows] == [("8", "0.05"), ("9", None)]
  assert "–" in selection.table(chosen).splitlines()[-1]


@pytest.mark.parametrize("bars", ["ci95", "minmax"])
def test_error_bars_of_the_trend_figures(bars):
  rows = hand_rows()
  panels, title = trends.metric_panels(rows, "rho", AXES, bars)
  width16 = panels[0].series[0]                      # test error, width 16, ρ = 0.05 and 0.1
  assert width16.ys.tolist() == pytest.approx([0.31, 0.21])
  half = 12.7062 * 0.01 if bars == "ci95" else 0.01
  assert (width16.upper - width16.ys).tolist() == pytest.approx([half, half], rel=1e-5)
  assert (width16.ys - width16.lower).tolist() == pytest.approx([half, half], rel=1e-5)
  assert title.endswith("bars: 95% t-interval)" if bars == "ci95" else "bars: min–max)")


def test_compare_selects_rho_on_validation_and_writes_the_tables(tmp_path, capsys, monkeypatch):
  titles, write = {}, figure.write

  def titled(path, panels, **kwargs):
    titles[os.path.basename(path)] = kwargs.get("title")
    return write(path, panels, **kwargs)
  monkeypatch.setattr(figure, "write", titled)
  out = tmp_path / "report"
  code = compare.main([*write_runs(tmp_path), f"--out={out}", "--select_by=validation_error",
                       "--select_over=rho", "--error_bars=minmax"])
  printed = capsys.readouterr().out
  assert code == 0
  summary_rows = read_csv(out / "summary.csv")
  assert {"validation_error", "validation_loss"} <= set(summary_rows[0])
  assert len(read_csv(out / "cells.csv")) == 4
  chosen = read_csv(out / "selection.csv")
  assert [(r["mlp_width"], r["rho"], r["n"]) for r in chosen] == [("16", "0.05", "2"),
                                                                  ("64", "0.1", "2")]
  assert float(chosen[0]["test_loss_mean"]) == pytest.approx(3.1)
  assert float(chosen[1]["validation_error_ci95"]) == pytest.approx(12.7062 * 0.02, rel=1e-5)
  assert "mlp_width  rho   n  validation_error" in printed and "selection.csv" in printed
  for name in ("cells.csv", "selection.csv"):                   # docs/outputs.md names them
    with open(out / name, encoding="utf-8") as f:
      header = next(csv.reader(f))
    assert not test_outputs_doc.undocumented(test_outputs_doc.stat_keys(header) - set(AXES))
  assert (out / "metric_vs_rho.pdf").read_bytes().startswith(b"%PDF")
  assert "bars: min–max" in titles["metric_vs_rho.pdf"]


@pytest.mark.parametrize("extra, validation, message", [
    (["--select_by=validation_error"], True, "--select_by needs --select_over"),
    (["--select_over=rho"], True, "--select_over needs --select_by"),
    (["--select_by=validation_error", "--select_over=width"], True,
     "--select_over: width is not an axis of the runs other than seed (axes: mlp_width, rho)"),
    (["--select_by=validation_error", "--select_over=seed"], True, "other than seed"),
    (["--select_by=accuracy", "--select_over=rho"], True,
     "--select_by must be a metric column of summary.csv"),
    (["--select_by=validation_error", "--select_over=rho"], False,
     "--select_by=validation_error: no run compared has validation_error"),
])
def test_bad_selection_flags_are_one_line_and_exit_2(tmp_path, capsys, extra, validation,
                                                     message):
  paths = write_runs(tmp_path, validation=validation)
  code = compare.main([*paths, f"--out={tmp_path / 'report'}", *extra])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and err[0].startswith("compare: error: "), err
  assert message in err[0]
  assert not (tmp_path / "report").exists()          # refused before anything is written


def test_summary_picks_up_the_final_validation_metrics(tmp_path):
  write_runs(tmp_path)
  run = summary.row(sources.read_pickle(str(tmp_path / "w16r0.05s1.pkl"), "r"), AXES)
  assert (run["validation_error"], run["validation_loss"]) == (0.12, 0.5)
  assert np.isclose(run["test_error"], 0.32)


@pytest.mark.slow
def test_a_rho_by_seed_sweep_with_a_validation_split_is_selected_on_it(real_tfds, tmp_path,
                                                                       capsys):
  """The SAM paper's protocol end to end: a small ρ × seed sweep whose runs hold out a
  validation split, then compare choosing ρ on the validation error."""
  from sam_edge import sweep
  folder = tmp_path / "sw"
  assert sweep.main([f"--out={folder}", "--", "image_classification",
                     f"--tfds_data_dir={real_tfds}", "--rho=0,0.05", "--seed=0,1",
                     "--mlp_width=8", "--mlp_depth=2", "--batch_size=50",
                     "--mini_training_set_num_batches=4", "--mini_test_set_num_batches=2",
                     "--validation_fraction=0.25", "--num_epochs=2", "--step_size=0.05",
                     "--hessian_check_gap=0"]) == 0
  out = tmp_path / "report"
  assert compare.main([str(folder), f"--out={out}", "--select_by=validation_error",
                       "--select_over=rho"]) == 0
  rows = read_csv(out / "summary.csv")
  assert len(rows) == 4 and all(float(r["validation_error"]) >= 0 for r in rows)
  assert {r["steps"] for r in rows} == {"6"}          # 150 trained on, 3 batches × 2 epochs
  table = read_csv(out / "cells.csv")
  assert sorted(r["rho"] for r in table) == ["0", "0.05"] and {r["n"] for r in table} == {"2"}
  chosen = read_csv(out / "selection.csv")
  assert len(chosen) == 1 and chosen[0]["n"] == "2"
  by_rho = {r["rho"]: float(r["validation_error_mean"]) for r in table}
  assert chosen[0]["rho"] == min(by_rho, key=lambda rho: (by_rho[rho], rho))
  assert float(chosen[0]["test_error_mean"]) == float(
      next(r for r in table if r["rho"] == chosen[0]["rho"])["test_error_mean"])
  assert "selection.csv" in capsys.readouterr().out
