"""docs/outputs.md names every key a run writes: every key of a real run's pickle (records with
every curvature kind, losses with the per-step tracking, evaluations, final, environment) and of
a sweep's files (sweep.json, done.json, summary.csv, cells.csv, params.npz's meta, a checkpoint's
meta). A key that a run writes and the page does not name fails here."""

import csv
import json
import pickle
import re

import numpy as np
import pytest

import image_classification as ic
from sam_edge.cli import main as cli
from sam_edge.curvature import registry
from sam_edge.studies import cells
from tests.helpers import REPO

DOC = REPO / "docs" / "outputs.md"
DATA_KEYED = {"per_layer"}            # dicts keyed by data (block names): their values' keys count
AXES = ("mlp_width", "batch_size", "seed")    # the tiny sweep's (helpers.tiny_sweep_args)


def documented() -> set[str]:
  """Every name inside a code span of the page (`trace_stderr`, `{"nodes": ...}`)."""
  spans = re.findall(r"`([^`\n]+)`", DOC.read_text())
  return {word for span in spans for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def keys_of(value, name: str = "") -> set[str]:
  """The keys of `value`'s dicts, at every depth (through lists); for an entry of DATA_KEYED,
  the keys of its values."""
  found: set[str] = set()
  if isinstance(value, dict):
    for key, inner in value.items():
      if name in DATA_KEYED:
        found |= keys_of(inner)
      else:
        found |= {key} | keys_of(inner, key)
  elif isinstance(value, list):
    for inner in value:
      found |= keys_of(inner, name)
  return found


def pickle_keys(raw: dict) -> set[str]:
  """Every key of a raw pickle but the flags in its config."""
  return set(raw) | keys_of({k: v for k, v in raw.items() if k != "config"})


def stat_keys(header: list[str]) -> set[str]:
  """The names a header of cells.csv or selection.csv stands for: a column `<metric>_<stat>`
  (mean, std, n, ci95) as the metric and `_<stat>` (the page writes `<metric>_mean`), any other
  column as itself."""
  found = set()
  for column in header:
    metric, _, stat = column.rpartition("_")
    found |= {metric, f"_{stat}"} if metric and stat in cells.STATS else {column}
  return found


def undocumented(keys: set[str]) -> list[str]:
  return sorted(keys - documented())


def test_the_check_finds_names_in_code_spans_only():
  names = documented()
  assert {"records_sha256", "nodes", "weights", "device_ids", "lambda1_per_step"} <= names
  assert "meaning" not in names and "no_such_key" not in names
  assert keys_of({"per_layer": {"Dense_0": {"eigenvalue": 1}}, "a": [{"b": 1}]}) == {
      "per_layer", "eigenvalue", "a", "b"}
  assert stat_keys(["rho", "n", "test_error_ci95", "steps_n"]) == {
      "rho", "n", "test_error", "_ci95", "steps", "_n"}
  assert {"_mean", "_std", "_n", "_ci95"} <= names


def test_every_curvature_kind_s_record_keys_are_documented():
  assert not undocumented({k for kind in registry.KINDS for k in kind.record_keys})


@pytest.mark.slow
def test_every_key_of_the_tiny_sweep_s_files_is_documented(tiny_sweep):
  keys = set(json.loads((tiny_sweep / "sweep.json").read_text()))
  with open(tiny_sweep / "summary.csv", encoding="utf-8") as f:
    keys |= set(next(csv.reader(f))) - set(AXES)
  with open(tiny_sweep / "cells.csv", encoding="utf-8") as f:
    keys |= stat_keys(next(csv.reader(f))) - set(AXES)
  folders = sorted(p.parent for p in tiny_sweep.glob("*/raw.pkl"))
  assert len(folders) == 8
  for folder in folders:
    keys |= pickle_keys(pickle.loads((folder / "raw.pkl").read_bytes()))
    keys |= keys_of(json.loads((folder / "done.json").read_text()))
    with np.load(folder / "params.npz", allow_pickle=False) as npz:
      meta = json.loads(npz["meta"].tobytes())
    keys |= set(meta) | set(meta["tree"]) | keys_of(list(meta["arrays"].values()))
    for step in (folder / "checkpoints").glob("[0-9]*"):
      body = json.loads((step / "meta" / "metadata").read_text())
      keys |= set(body) | set(body["progress"]) | set(body["sha256"])
  assert not undocumented(keys)


@pytest.mark.slow
def test_every_key_of_a_run_with_every_measurement_is_documented(mock_mnist, tmp_path):
  """A run with every curvature kind (each kind's boolean flags on), the per-step tracking with
  SAM, evaluations (with the weights' moving average's), heavy ball and label noise."""
  every_kind = [f"--{o.name}" for kind in registry.KINDS for o in kind.options
                if o.default is False]
  raw_file = tmp_path / "raw.pkl"
  cli.parse_flags(ic.FLAGS, [ic.PROG, f"--tfds_data_dir={mock_mnist}", "--nn_architecture=MLP",
                             "--mlp_width=8", "--mlp_depth=2", "--batch_size=8", "--max_steps=2",
                             "--measure_every_steps=1", "--eval_every_steps=1",
                             "--lanczos_max_steps=5", "--min_eigenvalue_max_steps=5",
                             "--trace_probes=4", "--density_probes=2", "--density_steps=5",
                             "--batch_sharpness_batches=2", "--rho=0.05",
                             "--optimizer=momentum", "--label_noise=0.25", "--track_every_step",
                             "--ema_decay=0.9", *every_kind, f"--raw_data_output={raw_file}",
                             "--eigs_curve_output=", "--eigs_se_only_output=",
                             "--alignment_curve_output=", "--loss_curve_output=",
                             "--eval_curve_output=", "--tracking_curve_output=",
                             "--density_output=", "--curvature_output="])
  assert ic.main([]) == 0
  raw = pickle.loads(raw_file.read_bytes())
  record_keys = set(raw["records"][0])
  assert {k for kind in registry.KINDS for k in kind.record_keys} <= record_keys
  assert {"lambda1_per_step", "gradient_curvature"} <= set(raw["losses"])
  assert raw["evaluations"] and "noisy_labels" in raw["final"]
  assert "ema_test_error" in raw["evaluations"][0] and "ema_test_loss" in raw["final"]
  assert not undocumented(pickle_keys(raw))
