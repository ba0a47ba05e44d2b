"""`python -m sam_edge.power_law` on real data: CSV files (a linear target, a file shaped like
Bike-Sharing's hour.csv, every bad input as one line and exit code 2), CIFAR-10 through TFDS's
mock data, and the subsets (stratified, random, first) with their standardisation."""

import csv
import json
import pathlib
import sys

import numpy as np
import pytest

from sam_edge import power_law
from sam_edge.data import idx
from sam_edge.linear_sgd import inputs, tables
from tests.helpers import NUM_MOCK, mocked_tfds

HOUR_FEATURES = ("season", "yr", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit",
                 "temp", "atemp", "hum", "windspeed")


def write_csv(path: pathlib.Path, header: list[str], rows: list[list]) -> pathlib.Path:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def linear_csv(path: pathlib.Path, rows: int = 100, shuffled: bool = False) -> pathlib.Path:
  """Columns name (text), a, b, c, d (N(0, 1)) and y = 3a − 2b + c + 0.5 (d unused); with
  `shuffled` the same y values in a random order: a target no feature explains."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(rows, 4))
  y = 3 * x[:, 0] - 2 * x[:, 1] + x[:, 2] + 0.5
  y = rng.permutation(y) if shuffled else y
  return write_csv(path, ["name", "a", "b", "c", "d", "y"],
                   [[f"row{i}", *(f"{v:.6f}" for v in x[i]), f"{y[i]:.6f}"] for i in range(rows)])


def hour_csv(path: pathlib.Path, rows: int = 120) -> pathlib.Path:
  """A synthetic file with UCI Bike-Sharing hour.csv's 17 columns; cnt = casual + registered."""
  rng = np.random.default_rng(1)
  header = ["instant", "dteday", "season", "yr", "mnth", "hr", "holiday", "weekday",
            "workingday", "weathersit", "temp", "atemp", "hum", "windspeed", "casual",
            "registered", "cnt"]
  body = []
  for i in range(rows):
    day, hour = divmod(i, 24)
    casual, registered = int(rng.integers(0, 50)), int(rng.integers(0, 300))
    body.append([i + 1, f"2011-01-{day + 1:02d}", 1 + day % 4, day % 2, 1 + day % 12, hour,
                 int(day % 7 == 0), day % 7, int(day % 7 < 5), int(rng.integers(1, 4)),
                 *(f"{v:.4f}" for v in rng.uniform(size=4)), casual, registered,
                 casual + registered])
  return write_csv(path, header, body)


def run(args: list[str], capsys) -> tuple[int, str, str]:
  code = power_law.main(args)
  printed = capsys.readouterr()
  return code, printed.out, printed.err


def test_a_linear_target_is_fitted_by_the_linearised_regime(tmp_path, capsys):
  """y = 3a − 2b + c + 0.5 lies in the kernel's top directions: after 1,000 steps the loss is
  below 1e-3·L(0) (measured ~1e-4 of it) and a hundred times below that of the same values
  shuffled across rows, which no feature explains (measured 700 times)."""
  finals = {}
  for name in ("linear", "shuffled"):
    out = tmp_path / name
    path = linear_csv(tmp_path / f"{name}.csv", shuffled=name == "shuffled")
    code, printed, err = run([f"--out={out}", "--data=csv", "--target_column=y",
                              f"--csv_path={path}", "--num_examples=64", "--hidden_width=256",
                              "--regimes=linearized", "--batch_sizes=8", "--step_sizes=1",
                              "--steps=1000", "--seeds=2"], capsys)
    assert code == 0, err
    assert "64 random rows, 4 features → y" in printed
    saved = np.load(out / "curves.npz")
    finals[name] = (saved["losses"][0, :, -1].mean(), saved["losses"][0, 0, 0])
  final, start = finals["linear"]
  assert final < 1e-3 * start
  assert final < finals["shuffled"][0] / 100


def test_a_file_shaped_like_bike_sharing_hour_csv_runs_end_to_end(tmp_path, capsys):
  path = hour_csv(tmp_path / "hour.csv")
  table = tables.read(str(path), ["cnt"])
  assert table.layout == "UCI Bike-Sharing hour.csv" and table.feature_names == HOUR_FEATURES
  out = tmp_path / "study"
  code, printed, err = run([f"--out={out}", "--data=csv", f"--csv_path={path}",
                            "--target_column=cnt", "--num_examples=48", "--hidden_width=64",
                            "--regimes=network,linearized,spectral_diagonal", "--batch_sizes=8",
                            "--step_sizes=0.5", "--steps=100", "--seeds=2"], capsys)
  assert code == 0, err
  assert "hour.csv (UCI Bike-Sharing hour.csv), 48 random rows, 12 features → cnt" in printed
  doc = json.loads((out / "results.json").read_text())
  assert [r["regime"] for r in doc["runs"]] == ["network", "linearized", "spectral_diagonal",
                                               "spectral_diagonal"]
  assert all(r["converged"] for r in doc["runs"])
  for name in ("curves", "spectrum", "stability", "budget"):
    assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def test_csv_features_default_to_the_numeric_columns_and_are_standardised(tmp_path):
  path = str(linear_csv(tmp_path / "linear.csv"))
  table = tables.read(path, ["y"])
  assert table.layout is None and table.feature_names == ("a", "b", "c", "d")
  assert tables.read(path, ["y"], ["d", "a"]).feature_names == ("d", "a")
  assert tables.read(path, ["a", "b"]).target[0] == pytest.approx(table.features[0, :2].mean())
  chosen = inputs.csv(path, ["y"], None, 40, "random", 0)
  np.testing.assert_allclose(chosen.x.mean(0), 0, atol=1e-12)
  np.testing.assert_allclose(chosen.x.std(0, ddof=1), 1)
  assert chosen.y.std(ddof=1) == pytest.approx(1)
  # the rows stay whole: the standardised target is still a linear function of the features
  design = np.column_stack([chosen.x, np.ones(40)])
  residual = chosen.y - design @ np.linalg.lstsq(design, chosen.y, rcond=None)[0]
  assert np.abs(residual).max() < 1e-5
  again, other = (inputs.csv(path, ["y"], None, 40, "random", seed) for seed in (0, 1))
  np.testing.assert_array_equal(again.x, chosen.x)
  assert not np.allclose(other.x, chosen.x)
  first = inputs.csv(path, ["y"], None, 40, "first", 0)
  np.testing.assert_allclose(first.x[:, 0], inputs.standardised(table.features[:40, 0]))


def test_sgemm_keeps_its_fourteen_parameters_and_averages_its_four_timings(tmp_path):
  runs = [f"Run{i} (ms)" for i in range(1, 5)]
  header = ["MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN", "STRM",
            "STRN", "SA", "SB", *runs]
  rows = [[16 * (1 + i % 4)] * 14 + [10.0 + i, 11.0 + i, 12.0 + i, 13.0 + i] for i in range(6)]
  path = str(write_csv(tmp_path / "sgemm_product.csv", header, rows))
  table = tables.read(path, runs)
  assert table.layout == "UCI SGEMM sgemm_product.csv" and table.feature_names == tuple(header[:14])
  np.testing.assert_allclose(table.target, 11.5 + np.arange(6))
  assert tables.read(path, runs[:1]).feature_names == tuple(header[:14])   # no timing leaks in


BAD_CSV = [  # (file contents or None for a missing file, flags, what the error line must name)
    (None, ["--target_column=y"], "no such file"),
    (b"\xff\xfe\x00binary", ["--target_column=y"], "is not UTF-8 text (byte 0xff at offset 0)"),
    (b"a,y\n1,\"2\n", ["--target_column=y"], "is not a CSV file"),
    (b"a,y\n1,2\n3\n", ["--target_column=y"], "line 3 has 1 fields, the header 2"),
    (b"", ["--target_column=y"], "is empty"),
    (b"a,y\n", ["--target_column=y"], "holds a header but no rows"),
    (b"a,a,y\n1,2,3\n", ["--target_column=y"], "the header names 'a' more than once"),
    (b"a,y\n1,2\n3,4\n", ["--target_column=z"], "--target_column: "),
    (b"a,y\n1,2\n3,4\n", ["--target_column=y", "--feature_columns=a,q"], "no column 'q'"),
    (b"a,b,y\n1,x,2\n3,4,5\n", ["--target_column=y", "--feature_columns=a,b"],
     "column 'b' holds 'x' at line 2, not a finite number"),
    (b"a,y\n1,2\n3,nan\n", ["--target_column=y"], "column 'y' holds 'nan' at line 3"),
    (b"a,y\n1,2\n3,\n", ["--target_column=y"], "column 'y' holds '' at line 3"),
    (b"t,y\nu,2\nv,4\n", ["--target_column=y"], "no numeric column besides the target"),
    (b"a,y\n1,2\n3,4\n", ["--target_column=y", "--feature_columns=a,y"],
     "--feature_columns must not hold the target column 'y'"),
    (b"a,y\n1,2\n3,2\n", ["--target_column=y"], "is constant over the 2 chosen rows"),
    (b"a,y\n1,2\n3,4\n", ["--target_column=y", "--num_examples=3"],
     "--num_examples=3 but --csv_path="),
    (b"a,y\n1,2\n3,4\n", ["--target_column=y", "--subset=stratified"],
     "--subset=stratified needs classes"),
    (b"a,y\n1,2\n3,4\n", [], "--data=csv needs --target_column"),
    (b"a,y\n1,2\n3,4\n", ["--target_column=y", "--feature_columns="],
     "--feature_columns must list at least one column"),
]


@pytest.mark.parametrize("contents,flags,message", BAD_CSV)
def test_a_bad_csv_is_one_line_and_exit_code_2(tmp_path, capsys, contents, flags, message):
  path = tmp_path / "data.csv"
  if contents is not None:
    path.write_bytes(contents)
  args = [f"--out={tmp_path}/out", "--data=csv", f"--csv_path={path}", "--num_examples=2",
          "--batch_sizes=1", *flags]
  with pytest.raises(SystemExit) as stop:
    sys.exit(power_law.main(args))
  assert stop.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("power_law: error: ") and message in err[0], err
  assert not (tmp_path / "out").exists()


@pytest.fixture
def mock_cifar10(tmp_path):
  """A TFDS data dir for CIFAR-10, TFDS mocked to NUM_MOCK random examples per split."""
  with mocked_tfds("cifar10", tmp_path) as data_dir:
    yield data_dir


def test_cifar10_is_read_through_tfds(mock_cifar10, tmp_path, capsys):
  out = tmp_path / "study"
  flags = [f"--out={out}", "--data=cifar10", f"--tfds_data_dir={mock_cifar10}",
           "--hidden_width=32", "--regimes=linearized,spectral_diagonal", "--tau=1",
           "--batch_sizes=4", "--steps=50", "--seeds=1"]
  code, printed, err = run(flags + ["--num_examples=20"], capsys)
  assert code == 0, err
  assert "CIFAR-10, 20 stratified training images" in printed
  doc = json.loads((out / "results.json").read_text())
  assert np.load(out / doc["files"]["spectrum"])["eigenvalues"].shape == (20,)
  assert len(doc["runs"]) == 2
  code, _, err = run([f"--out={tmp_path}/more"] + flags[1:] + [f"--num_examples={NUM_MOCK + 1}"],
                     capsys)
  assert code == 2 and err.strip() == (f"power_law: error: --num_examples={NUM_MOCK + 1} but "
                                       f"the CIFAR-10 training split holds {NUM_MOCK} examples")
  assert not (tmp_path / "more").exists()


def test_a_stratified_subset_keeps_each_class_share():
  labels = np.repeat([0, 1, 2], [5, 3, 2])
  rng = np.random.default_rng(0)
  chosen = inputs.stratified(labels, 5, rng)
  # shares 2.5, 1.5, 1: one left over, to the first of the two largest remainders
  assert np.bincount(labels[chosen]).tolist() == [3, 1, 1] and len(set(chosen)) == 5
  np.testing.assert_array_equal(inputs.subset("stratified", 10, 5, 3, labels),
                                inputs.subset("stratified", 10, 5, 3, labels))
  assert inputs.subset("first", 10, 4, 3).tolist() == [0, 1, 2, 3]
  assert sorted(inputs.subset("random", 10, 10, 3)) == list(range(10))


def test_mnist_subsets_are_stratified_and_standardised_over_the_whole_split(shared_data):
  folder = str(shared_data / "mnist")
  images, labels = idx.mnist_train(folder, 60000)
  chosen = inputs.mnist(folder, 200, "stratified", 0)
  digits = np.rint(chosen.y * labels.std(ddof=1) + labels.mean()).astype(np.int64)
  assert np.all(np.abs(np.bincount(digits, minlength=10) - 200 * np.bincount(labels) / 60000) < 1)
  pixels = chosen.x * images.std(ddof=1, dtype=np.float64) + images.mean(dtype=np.float64)
  np.testing.assert_allclose(pixels, np.rint(pixels), atol=1e-6)
  assert not np.allclose(inputs.mnist(folder, 200, "stratified", 1).x, chosen.x)
  first = inputs.mnist(folder, 200, "first", 0)
  assert first.x.mean() == pytest.approx(0, abs=1e-12) and first.x.std() == pytest.approx(1)
  assert first.y.tolist()[:3] == pytest.approx(list(inputs.standardised(labels[:200], ddof=0)[:3]))
