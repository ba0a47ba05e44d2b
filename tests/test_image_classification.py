"""End-to-end tests of the image-classification entry point (image_classification.py).

Most runs are in-process under ``tfds.testing.mock_data`` (random MNIST-shaped images, with a
dataset_info.json giving split sizes so that TFDS's ``batch_size=-1`` reads work, as in
test_images.py). Two runs read real MNIST prepared offline from ../shared/data/mnist (the shared
`real_tfds` folder; marked ``slow``), one of them a process of its own stopped by SIGINT.
"""

import dataclasses
import math
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import image_classification as ic
from sam_edge.cli import config as cli_config
from sam_edge.cli import main as cli
from sam_edge.run import experiment
from tests.helpers import NUM_MOCK, REPO

PROG = "image_classification"

PDF_FLAGS = ("eigs_curve_output", "eigs_se_only_output", "alignment_curve_output",
             "loss_curve_output")
RECORD_KEYS = {"step", "time", "seconds", "eigenvalues", "residuals", "hvps", "two_over_eta",
               "sam_edge", "grad_norm", "loss", "g_alignment", "sg_alignment", "converged",
               "eigenvalue_kind", "operator", "edge", "edge_label", "step_size", "epoch"}
SMALL_MLP = ["--nn_architecture=MLP", "--mlp_width=16", "--mlp_depth=2"]
# One block keeps compilation short on 2 cores. The random mock images give this CNN a top
# Hessian eigenvalue in the 1e4..1e6 range, so its step size is small enough to stay finite.
SMALL_CNN = ["--nn_architecture=CNN", "--cnn_num_blocks=1", "--cnn_feature_multiplier=4",
             "--step_size=1e-5"]


# --------------------------------------------------------------------------------------------
# Helpers


def output_paths(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  return {
      "eigs_curve_output": folder / "eigs.pdf",
      "eigs_se_only_output": folder / "eigs_se_only.pdf",
      "alignment_curve_output": folder / "a.pdf",
      "loss_curve_output": folder / "ell.pdf",
      "raw_data_output": folder / "raw.pkl",
  }


def output_args(paths: dict[str, pathlib.Path]) -> list[str]:
  return [f"--{name}={path}" for name, path in paths.items()]


def parse(args: list[str]) -> None:
  cli.parse_flags(ic.FLAGS, [PROG, *args])


def run_main(args: list[str]) -> int:
  """Parses `args` into image_classification.FLAGS and runs main in-process."""
  parse(args)
  return ic.main([])


def read_pickle(path: pathlib.Path) -> dict:
  with open(path, "rb") as f:
    return pickle.load(f)


def assert_plain(obj, where="raw") -> None:
  """Only Python builtins (so plain `pickle` reads it without numpy or jax)."""
  if isinstance(obj, dict):
    for k, v in obj.items():
      assert_plain(k, f"{where} key")
      assert_plain(v, f"{where}[{k!r}]")
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      assert_plain(v, f"{where}[{i}]")
  else:
    assert obj is None or type(obj) in (bool, int, float, str), (where, type(obj))


def assert_finite(xs, where="") -> None:
  xs = xs if isinstance(xs, list) else [xs]
  assert all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs), (where, xs)


def check_records(raw: dict, *, num_steps: int, k: int, step_size: float, rho: float,
                  lanczos_max_steps: int) -> None:
  """Measured every step for `num_steps` steps: one finite, well-formed record per step."""
  records = raw["records"]
  assert [r["step"] for r in records] == list(range(num_steps))
  assert raw["losses"]["step"] == list(range(num_steps))
  assert_finite(raw["losses"]["loss"], "losses")
  times = [r["time"] for r in records]
  assert times == sorted(times) and times[0] >= 0
  for r in records:
    assert set(r) == RECORD_KEYS, set(r) ^ RECORD_KEYS
    eigs = r["eigenvalues"]
    assert len(eigs) == k and len(r["residuals"]) == k
    assert_finite(eigs, "eigenvalues")
    assert eigs == sorted(eigs, reverse=True), eigs
    assert_finite(r["residuals"], "residuals")
    assert all(x >= 0 for x in r["residuals"])
    assert isinstance(r["hvps"], int) and k <= r["hvps"] <= lanczos_max_steps
    assert isinstance(r["converged"], bool) and r["eigenvalue_kind"] == "signed"
    if r["converged"]:
      assert max(r["residuals"]) <= 1e-4 * max(abs(x) for x in eigs) * (1 + 1e-6)
    for name in ("sam_edge", "two_over_eta", "grad_norm", "loss", "g_alignment",
                 "sg_alignment", "time", "seconds"):
      assert_finite(r[name], name)
    assert r["two_over_eta"] == pytest.approx(2 / step_size)
    assert r["edge"] == pytest.approx(r["sam_edge"]) and r["operator"] == "hessian"
    assert r["edge_label"] == ("2/η" if rho == 0 else "SAM-edge")
    if rho == 0:
      assert r["sam_edge"] == pytest.approx(r["two_over_eta"])
    else:
      assert 0 < r["sam_edge"] < r["two_over_eta"]
    for name in ("g_alignment", "sg_alignment"):
      assert 0 <= r[name] <= 1 + 1e-6, (name, r[name])
  # A measurement's loss is on the batch of its step, the same as that step's training loss.
  for r, loss in zip(records, raw["losses"]["loss"]):
    assert r["loss"] == pytest.approx(loss, rel=1e-4)


def without_timing(records: list[dict]) -> list[dict]:
  return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in records]


# --------------------------------------------------------------------------------------------
# 1. End to end under mock data, in-process


@pytest.mark.parametrize("arch, rho, k, batch_size", [
    pytest.param("MLP", 0.0, 1, NUM_MOCK, marks=pytest.mark.slow),   # full batch (the default)
    ("MLP", 0.1, 3, 8),                                              # the fast lane's run
    pytest.param("CNN", 0.0, 3, 8, marks=pytest.mark.slow),
    pytest.param("CNN", 0.1, 1, NUM_MOCK, marks=pytest.mark.slow),
])
@pytest.mark.slow
def test_end_to_end_mocked(arch, rho, k, batch_size, mock_mnist, tmp_path, capsys):
  num_steps, lanczos_max_steps = 3, 10
  paths = output_paths(tmp_path)
  args = [f"--tfds_data_dir={mock_mnist}", f"--batch_size={batch_size}", f"--rho={rho}",
          f"--num_principal_components={k}", f"--max_steps={num_steps}",
          "--measure_every_steps=1", f"--lanczos_max_steps={lanczos_max_steps}",
          *(SMALL_MLP if arch == "MLP" else SMALL_CNN), *output_args(paths)]
  assert run_main(args) == 0
  out = capsys.readouterr().out
  assert "Test error:" in out
  assert sum(line.startswith("measure step ") for line in out.splitlines()) == num_steps

  for name in PDF_FLAGS:
    data = paths[name].read_bytes()
    assert data.startswith(b"%PDF"), name
  raw = read_pickle(paths["raw_data_output"])
  assert set(raw) == {"config", "records", "losses", "evaluations", "final", "environment"}
  assert_plain(raw)
  env = raw["environment"]
  assert env["platform"] == "cpu" and env["device_count"] >= 1 and env["device_kind"]
  assert env["versions"]["jax"] == jax.__version__ and env["versions"]["flax"]
  assert env["git"] is None or len(env["git"]["commit"]) == 40
  assert env["start_time"] and env["python"]
  step_size = ic.FLAGS.step_size
  check_records(raw, num_steps=num_steps, k=k, step_size=step_size, rho=rho,
                lanczos_max_steps=lanczos_max_steps)

  final = raw["final"]
  assert final["stopped_because"] == "max_steps"
  assert final["steps"] == num_steps and final["measurements"] == num_steps
  assert final["training_examples"] == final["test_examples"] == NUM_MOCK
  assert 0 <= final["test_error"] <= 1
  assert f"Test error: {final['test_error']}" in out
  config = raw["config"]
  assert config["rho"] == rho and config["nn_architecture"] == arch
  assert config["num_principal_components"] == k and config["step_size"] == step_size


# --------------------------------------------------------------------------------------------
# 2. End to end on real MNIST (the shared prepared data folder); Ctrl-C in a process of its own


@pytest.mark.slow
def test_real_mnist(real_tfds, tmp_path, capsys):
  num_steps = 3
  paths = output_paths(tmp_path)
  code = run_main(["--dataset=mnist", f"--tfds_data_dir={real_tfds}", *SMALL_MLP,
                   "--batch_size=100", "--mini_training_set_num_batches=2",
                   "--mini_test_set_num_batches=5", "--rho=0.05", f"--max_steps={num_steps}",
                   "--measure_every_steps=1", "--lanczos_max_steps=10",
                   "--num_principal_components=2", *output_args(paths)])
  out = capsys.readouterr().out
  assert code == 0
  assert "Test error:" in out
  for name in PDF_FLAGS:
    assert paths[name].read_bytes().startswith(b"%PDF"), name
  raw = read_pickle(paths["raw_data_output"])
  assert_plain(raw)
  check_records(raw, num_steps=num_steps, k=2, step_size=0.01, rho=0.05, lanczos_max_steps=10)
  final = raw["final"]
  assert final["stopped_because"] == "max_steps" and final["steps"] == num_steps
  assert final["training_examples"] == 200 and final["test_examples"] == 500
  assert final["parameters"] == 784 * 16 + 16 + 16 * 10 + 10
  assert 0 <= final["test_error"] <= 1
  assert f"Test error: {final['test_error']}" in out


@pytest.mark.slow
def test_sigint_stops_cleanly_and_keeps_outputs(real_tfds, tmp_path):
  """SIGINT mid-run: exit code 130, the test error printed and every output written."""
  paths = output_paths(tmp_path)
  cmd = [sys.executable, "-m", PROG, "--dataset=mnist", f"--tfds_data_dir={real_tfds}",
         *SMALL_MLP, "--batch_size=100",
         "--mini_training_set_num_batches=2", "--mini_test_set_num_batches=5",
         "--measure_every_steps=20", "--lanczos_max_steps=10", *output_args(paths)]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)
    try:
      deadline = time.monotonic() + 300
      while not paths["raw_data_output"].exists():        # written after each measurement
        assert proc.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
        assert time.monotonic() < deadline, "no measurement within 300 s"
        time.sleep(0.2)
      time.sleep(1.0)
      proc.send_signal(signal.SIGINT)
      code = proc.wait(timeout=120)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert code == 130, (tmp_path / "stderr").read_text()[-3000:]
  assert "Test error:" in (tmp_path / "stdout").read_text()
  for name in PDF_FLAGS:
    assert paths[name].read_bytes().startswith(b"%PDF"), name
  raw = read_pickle(paths["raw_data_output"])
  final = raw["final"]
  assert final["stopped_because"] == "interrupted"
  assert final["steps"] > 0 and final["measurements"] == len(raw["records"]) >= 1
  assert [r["step"] for r in raw["records"]] == list(range(0, 20 * len(raw["records"]), 20))
  assert len(raw["losses"]["loss"]) == final["steps"]
  assert 0 <= final["test_error"] <= 1


# --------------------------------------------------------------------------------------------
# 3. Determinism


@pytest.mark.slow
def test_same_seed_same_run_other_seed_other_run(mock_mnist, tmp_path, capsys):
  def run(seed: int, name: str) -> dict:
    raw_path = tmp_path / f"{name}.pkl"
    args = [f"--tfds_data_dir={mock_mnist}", "--batch_size=8", "--rho=0.1", f"--seed={seed}",
            "--num_principal_components=2", "--max_steps=4", "--measure_every_steps=1",
            "--lanczos_max_steps=10", *SMALL_MLP, f"--raw_data_output={raw_path}",
            *[f"--{flag}=" for flag in PDF_FLAGS]]          # only the pickle
    assert run_main(args) == 0
    return read_pickle(raw_path)

  a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
  capsys.readouterr()
  assert len(a["records"]) == 4
  assert without_timing(a["records"]) == without_timing(b["records"])
  assert a["losses"] == b["losses"]
  assert a["final"]["test_error"] == b["final"]["test_error"]
  assert a["losses"]["step"] == c["losses"]["step"]
  assert a["losses"]["loss"] != c["losses"]["loss"]
  assert all(x != y for x, y in zip(a["losses"]["loss"], c["losses"]["loss"]))


@pytest.mark.slow
def test_linearized_regime_has_the_constant_gauss_newton_hessian(mock_mnist, tmp_path, capsys):
  """--regime=linearized under squared error, full batch: the step-0 loss and gradient are the
  network's (f_lin and its Jacobian equal f's at w0), and the loss Hessian is the constant
  Gauss–Newton matrix of the network at w0, so λ1 stays put while the parameters (and the loss)
  move."""
  def run(regime: str) -> dict:
    raw_path = tmp_path / f"{regime}.pkl"
    args = [f"--tfds_data_dir={mock_mnist}", f"--batch_size={NUM_MOCK}", "--step_size=0.5",
            "--max_steps=4", "--measure_every_steps=1", "--lanczos_max_steps=30",
            "--lanczos_tol=1e-6", f"--regime={regime}", *SMALL_MLP,
            f"--raw_data_output={raw_path}", *[f"--{flag}=" for flag in PDF_FLAGS]]
    assert run_main(args) == 0
    return read_pickle(raw_path)

  net, lin = run("network"), run("linearized")
  capsys.readouterr()
  assert lin["losses"]["loss"][0] == pytest.approx(net["losses"]["loss"][0], rel=1e-6)
  assert lin["records"][0]["grad_norm"] == pytest.approx(net["records"][0]["grad_norm"], rel=1e-5)
  assert lin["losses"]["loss"][-1] < lin["losses"]["loss"][0]
  lam = [r["eigenvalues"][0] for r in lin["records"]]
  assert len(lam) == 4 and all(r["converged"] for r in lin["records"])
  np.testing.assert_allclose(lam, lam[0], rtol=1e-4)
  net_lam = [r["eigenvalues"][0] for r in net["records"]]
  assert abs(net_lam[-1] / net_lam[0] - 1) > 1e-3      # the network's own Hessian does move


# --------------------------------------------------------------------------------------------
# 4. Measurements never change the training trajectory


@pytest.mark.slow
def test_measurements_do_not_change_parameters(mock_mnist, capsys):
  num_steps = 5
  parse([f"--tfds_data_dir={mock_mnist}", "--batch_size=8", "--rho=0.1",
         "--num_principal_components=3", f"--max_steps={num_steps}", "--measure_every_steps=1",
         "--lanczos_max_steps=10", *SMALL_MLP])
  measured = cli_config.of_flags(ic.TASK, ic.FLAGS).run
  measured = dataclasses.replace(measured, outputs=())   # write nothing
  unmeasured = dataclasses.replace(measured, loop=dataclasses.replace(
      measured.loop, measure_every_steps=None, measure_gap_s=None))

  def run(settings):
    """experiment.run, capturing the initial and the final parameters (via `evaluate`)."""
    seen = {}

    def build(key):
      problem = ic.TASK.build(cli_config.of_flags(ic.TASK, ic.FLAGS).problem, key)
      seen["initial"] = jax.tree.map(np.array, problem.params)    # copies (state is donated)

      def evaluate(params, model_state, constants):
        seen["final"] = jax.tree.map(np.array, params)
        return problem.evaluate(params, model_state, constants)
      return dataclasses.replace(problem, evaluate=evaluate)

    raw, code = experiment.run(settings, build, config={})
    assert code == 0 and raw["final"]["steps"] == num_steps
    return raw, seen

  raw_m, seen_m = run(measured)
  raw_u, seen_u = run(unmeasured)
  capsys.readouterr()
  assert len(raw_m["records"]) == num_steps and raw_u["records"] == []
  assert raw_m["losses"] == raw_u["losses"]
  leaves = lambda tree: jax.tree_util.tree_leaves_with_path(tree)  # noqa: E731
  for (path, x), (_, y) in zip(leaves(seen_m["initial"]), leaves(seen_u["initial"])):
    np.testing.assert_array_equal(x, y, err_msg=str(path))
  assert jax.tree.structure(seen_m["final"]) == jax.tree.structure(seen_u["final"])
  for (path, x), (_, y) in zip(leaves(seen_m["final"]), leaves(seen_u["final"])):
    np.testing.assert_array_equal(x, y, err_msg=str(path))           # bitwise
  # ... and training did move them.
  assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(seen_m["initial"]),
                                                      jax.tree.leaves(seen_m["final"])))


# --------------------------------------------------------------------------------------------
# 5. --hessian_check_gap is in hours


def test_hessian_check_gap_is_in_hours():
  assert "hours" in ic.FLAGS["hessian_check_gap"].help.lower()
  parse(["--hessian_check_gap=0.001"])
  loop = cli_config.of_flags(ic.TASK, ic.FLAGS).run.loop
  assert loop.measure_gap_s == pytest.approx(3.6)
  assert loop.measure_every_steps is None
  parse([])                                       # the default: 0.25 h
  assert cli_config.of_flags(ic.TASK, ic.FLAGS).run.loop.measure_gap_s == pytest.approx(900.0)
  parse(["--hessian_check_gap=0"])                # 0: no time-based schedule
  assert cli_config.of_flags(ic.TASK, ic.FLAGS).run.loop.measure_gap_s is None
  parse(["--hessian_check_gap=0.001", "--measure_every_steps=3"])   # steps win
  loop = cli_config.of_flags(ic.TASK, ic.FLAGS).run.loop
  assert loop.measure_every_steps == 3 and loop.measure_gap_s is None
  parse(["--time_limit_in_hours=0.5"])
  assert cli_config.of_flags(ic.TASK, ic.FLAGS).run.loop.time_limit_s == pytest.approx(1800.0)


# --------------------------------------------------------------------------------------------
# 6. Bad inputs: exit code 2 and one line naming the flag


def assert_one_error_line(err: str, flag: str) -> None:
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1, err
  assert lines[0].startswith(f"{PROG}: error: "), lines[0]
  assert f"--{flag}" in lines[0], lines[0]


@pytest.mark.parametrize("make_arg, flag", [
    (lambda tmp: "--dataset=imagenet", "dataset"),
    (lambda tmp: "--dataset=imagenet2012 --data_pipeline=memory", "data_pipeline=stream"),
    (lambda tmp: "--dataset=imagenet2012", "manual_dir"),     # streamed; TFDS cannot download it
    (lambda tmp: "--rho=-1", "rho"),
    (lambda tmp: "--nn_architecture=RNN", "nn_architecture"),
    (lambda tmp: "--mlp_depth=1", "mlp_depth"),
    (lambda tmp: "--resnet_width=8", "resnet_width"),                  # the MLP has no width k
    (lambda tmp: "--params_output=/nonexistent/p.npz", "params_output"),
    (lambda tmp: f"--manual_dir={tmp / 'empty'}", "manual_dir"),
    (lambda tmp: "--raw_data_output=/nonexistent/x.pkl", "raw_data_output"),
    (lambda tmp: "--num_principal_components=11", "num_principal_components"),
])
def test_bad_input_exit_2(make_arg, flag, tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  assert_exit_2_before_anything(make_arg(tmp_path).split(), flag, tmp_path, capsys)


@pytest.mark.parametrize("args, flag", [
    (["--augment=flip,mixup"], "augment"),
    (["--augment=none,cutout"], "augment"),
    (["--augment=flip_crop,flip"], "augment"),
    (["--augment=flip,"], "augment"),
    (["--cutout_size=0"], "cutout_size"),
    (["--augment=cutout", "--cutout_size=29"], "cutout_size"),          # MNIST is 28x28
    (["--dataset=cifar10", "--cutout_size=33"], "cutout_size"),
    (["--brightness_delta=1.5"], "brightness_delta"),
    (["--augment=brightness", "--brightness_delta=-0.1"], "brightness_delta"),
    *[([f"--augment={a}", "--track_every_step"], "track_every_step")
      for a in ("flip_crop", "flip", "crop", "cutout", "brightness", "autoaugment",
                "autoaugment,cutout")],
])
def test_bad_augmentation_flags_exit_2(args, flag, tmp_path, capsys):
  assert_exit_2_before_anything(args, flag, tmp_path, capsys)


def assert_exit_2_before_anything(extra: list[str], flag: str, tmp_path, capsys) -> None:
  """`extra` on top of valid flags: exit code 2, one line naming --flag, nothing written or
  prepared."""
  out_dir = tmp_path / "out"
  out_dir.mkdir()
  paths = output_paths(out_dir)
  args = [*output_args(paths), f"--tfds_data_dir={tmp_path / 'tfds'}", "--lanczos_max_steps=10",
          *extra]
  assert run_main(args) == 2
  captured = capsys.readouterr()
  assert_one_error_line(captured.err, flag)
  assert "Test error" not in captured.out
  assert not any(out_dir.iterdir())                     # failed before writing anything
  assert not (tmp_path / "tfds").exists()               # ... or preparing any data


@pytest.mark.parametrize("arg, flag", [
    ("--rho=abc", "rho"),
    ("--max_steps=1.5", "max_steps"),
    ("--normalize=zscore", "normalize"),
])
def test_malformed_flag_exit_2(arg, flag, capsys):
  with pytest.raises(SystemExit) as e:
    parse([arg])
  assert e.value.code == 2
  assert_one_error_line(capsys.readouterr().err, flag)


def test_batch_larger_than_mini_data_exit_2(mock_mnist, tmp_path, capsys):
  """Found only once the data is loaded: still one line and exit code 2."""
  paths = output_paths(tmp_path)
  args = [f"--tfds_data_dir={mock_mnist}", f"--batch_size={NUM_MOCK + 1}", *SMALL_MLP,
          "--max_steps=1", *output_args(paths)]
  assert run_main(args) == 2
  captured = capsys.readouterr()
  assert_one_error_line(captured.err, "batch_size")
  assert "Test error" not in captured.out
  assert not paths["raw_data_output"].exists()


def test_manual_dir_with_wrong_files_exit_2(tmp_path, capsys):
  """The right file names with the wrong contents (e.g. fashion_mnist's files for mnist)."""
  manual = tmp_path / "manual"
  manual.mkdir()
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    (manual / name).write_bytes(b"not mnist")
  args = [f"--manual_dir={manual}", f"--tfds_data_dir={tmp_path / 'tfds'}", *SMALL_MLP,
          "--max_steps=1", *output_args(output_paths(tmp_path))]
  assert run_main(args) == 2
  err = capsys.readouterr().err
  assert_one_error_line(err, "manual_dir")
  assert "is not the mnist file TFDS expects (wrong checksum)" in err
