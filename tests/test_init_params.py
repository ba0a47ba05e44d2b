"""--init_params: a run started from an earlier run's parameters (`run.init_params`): the arrays
whose path and shape match are loaded bit for bit, the others stay fresh and are named in one
line; the linearized model expands around the loaded parameters; a file of another task or
architecture, a missing or damaged one, is one error line and exit code 2."""

import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import image_classification as ic
from sam_edge import errors
from sam_edge.cli import main as cli
from sam_edge.run import init_params, params_file
from sam_edge.run.problem import Problem
from sam_edge.studies import trained
from tests import test_outputs_doc
from tests.helpers import TINY_TRANSFORMER, mocked_tfds

TINY_MLP = ["--nn_architecture=MLP", "--mlp_width=8", "--mlp_depth=2", "--batch_size=8",
            "--hessian_check_gap=0", "--loss_curve_output=", "--eigs_curve_output=",
            "--eigs_se_only_output=", "--alignment_curve_output=", "--eval_curve_output="]


def _dense(rng, shapes: dict) -> dict:
  return {layer: {"kernel": rng.normal(size=k).astype(np.float32),
                  "bias": rng.normal(size=k[1]).astype(np.float32)}
          for layer, k in shapes.items()}


def _problem(params, model_state=None, constants=None) -> Problem:
  return Problem(forward=None, output_loss=None, params=params, train_arrays={},
                 evaluate=None, report=str, description={"parameters": 1},
                 model_state=model_state or {}, constants=constants or {})


def test_merge_loads_matching_arrays_bitwise_and_keeps_the_others():
  rng = np.random.default_rng(0)
  fresh = {"params": _dense(rng, {"Dense_0": (4, 3), "Dense_1": (3, 5)})}
  saved = {"params": _dense(rng, {"Dense_0": (4, 3), "Dense_1": (3, 2)}), "other": np.ones(2)}
  merged = init_params.merge(jax.tree.map(jnp.asarray, fresh), saved)
  assert merged.loaded == ["Dense_0/bias", "Dense_0/kernel"]
  assert merged.fresh == [("Dense_1/bias", (5,)), ("Dense_1/kernel", (3, 5))]
  for key in ("kernel", "bias"):
    got = np.asarray(merged.tree["params"]["Dense_0"][key])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32),
                                  saved["params"]["Dense_0"][key].view(np.uint32))
    np.testing.assert_array_equal(merged.tree["params"]["Dense_1"][key],
                                  fresh["params"]["Dense_1"][key])


def test_initialise_moves_w0_and_loads_batchnorm_statistics(tmp_path):
  rng = np.random.default_rng(1)
  old = {"params": _dense(rng, {"Dense_0": (4, 3), "Dense_1": (3, 10)})}
  stats = {"batch_stats": {"bn": {"mean": rng.normal(size=3).astype(np.float32)}}}
  path = tmp_path / "params.npz"
  params_file.write(str(path), "image_classification", 7, {"seed": 0}, old, stats)
  new = {"params": _dense(rng, {"Dense_0": (4, 3), "Dense_1": (3, 100)})}
  fresh_stats = {"batch_stats": {"bn": {"mean": np.zeros(3, np.float32),
                                        "var": np.ones(3, np.float32)}}}
  started, line = init_params.initialise(
      _problem(new, fresh_stats, {"w0": new}), str(tmp_path))       # the run folder
  assert line == (f"--init_params={tmp_path}: loaded 2 of 4 parameter arrays and 1 of 2 "
                  f"BatchNorm statistics ({path}, written by image_classification at step 7); "
                  "freshly initialised: Dense_1/bias [100], Dense_1/kernel [3,100], "
                  "batch_stats/bn/var [3]")
  w0 = started.constants["w0"]["params"]
  np.testing.assert_array_equal(w0["Dense_0"]["kernel"], old["params"]["Dense_0"]["kernel"])
  np.testing.assert_array_equal(w0["Dense_1"]["kernel"], new["params"]["Dense_1"]["kernel"])
  assert w0["Dense_0"]["kernel"] is not started.params["params"]["Dense_0"]["kernel"]   # a copy
  np.testing.assert_array_equal(started.model_state["batch_stats"]["bn"]["mean"],
                                stats["batch_stats"]["bn"]["mean"])
  assert started.description == {
      "parameters": 1, "init_params_file": str(path), "init_params_loaded": 3,
      "init_params_fresh": ["Dense_1/bias", "Dense_1/kernel", "batch_stats/bn/var"]}
  assert init_params.initialise(_problem(old), str(path))[1].endswith("none freshly initialised")

  other = {"params": {"Conv_0": {"kernel": np.ones((3, 3, 1, 4), np.float32)}}}
  with pytest.raises(errors.InputError, match=r"none of the 4 parameter arrays of .*Dense_0/bias"
                     r".* another architecture"):
    init_params.initialise(_problem(other), str(path))

  with zipfile.ZipFile(path) as z:                  # an array that no longer matches its sha256
    entries = {n: bytearray(z.read(n)) for n in z.namelist()}
  entries["a0.npy"][-1] ^= 0x01
  with zipfile.ZipFile(path, "w") as z:
    for n, b in entries.items():
      z.writestr(n, bytes(b))
  with pytest.raises(errors.InputError, match=r"^--init_params: .* array a0 does not match"):
    init_params.initialise(_problem(new), str(path))


def _run(args: list[str]) -> int:
  cli.parse_flags(ic.FLAGS, [ic.PROG, *args])
  return ic.main([])


def _write(path, task="image_classification", architecture="MLP") -> None:
  params_file.write(str(path), task, 1, {"nn_architecture": architecture},
                    {"params": {"Dense_0": {"bias": np.zeros(8, np.float32)}}}, {})


@pytest.mark.parametrize("case, message", [
    ("architecture", "holds a --nn_architecture=ResNet20 network, not --nn_architecture=MLP"),
    ("task", "written by transformer, not image_classification"),
    ("missing", "no such file or run folder"),
    ("empty folder", "holds no parameters file"),
    ("damaged", "not a readable parameters file"),
])
def test_a_file_of_another_task_or_architecture_or_unsound_is_one_line(case, message, tmp_path,
                                                                      capsys):
  path = tmp_path / "params.npz"
  if case in ("architecture", "task", "damaged"):
    _write(path, *{"architecture": ("image_classification", "ResNet20"),
                   "task": ("transformer",)}.get(case, ()))
  if case == "damaged":
    path.write_bytes(path.read_bytes()[:100])
  given = tmp_path if case == "empty folder" else path
  assert _run([*TINY_MLP, f"--init_params={given}", "--max_steps=1"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--init_params" in err[0] and message in err[0], err


def test_finetuning_on_more_classes_loads_all_but_the_head(tmp_path, capsys):
  """An MLP trained a step on CIFAR-10 starts a CIFAR-100 run (from its run folder): the hidden
  layer is loaded bit for bit (the new run's parameters after 0 steps), the head is fresh. The
  linearized model of the same start expands around those parameters: f_lin(w0) = f(w0), the
  same test loss, also when `studies.trained` rebuilds it."""
  first, second = tmp_path / "cifar10", tmp_path / "cifar100"
  first.mkdir()
  second.mkdir()
  with mocked_tfds("cifar10", first) as data_dir:
    assert _run([f"--tfds_data_dir={data_dir}", "--dataset=cifar10", *TINY_MLP, "--seed=1",
                 "--max_steps=1", "--raw_data_output=", f"--params_output={first / 'params.npz'}"
                 ]) == 0
  capsys.readouterr()
  with mocked_tfds("cifar100", second) as data_dir:
    start = [f"--tfds_data_dir={data_dir}", "--dataset=cifar100", *TINY_MLP, "--max_steps=0",
             "--loss=cross_entropy", f"--init_params={first}"]
    assert _run([*start, f"--raw_data_output={second / 'r.pkl'}",
                 f"--params_output={second / 'params.npz'}"]) == 0
    out = capsys.readouterr().out
    assert _run([*start, "--regime=linearized", f"--raw_data_output={second / 'lin.pkl'}",
                 f"--params_output={second / 'lin.npz'}"]) == 0
    rebuilt = trained.problem(trained.load(str(second / "lin.npz")))   # w0 from the file again
    again = rebuilt.evaluate(rebuilt.params, rebuilt.model_state, rebuilt.constants)
  assert (f"--init_params={first}: loaded 2 of 4 parameter arrays ({first / 'params.npz'}, "
          "written by image_classification at step 1); freshly initialised: Dense_1/bias [100], "
          "Dense_1/kernel [8,100]\n") in out
  old, new = (params_file.read(str(d / "params.npz")) for d in (first, second))
  assert new.step == 0 and new.config["init_params"] == str(first)
  for key in ("kernel", "bias"):
    a, b = old.params["params"]["Dense_0"][key], new.params["params"]["Dense_0"][key]
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
  assert new.params["params"]["Dense_1"]["kernel"].shape == (8, 100)
  final = pickle.loads((second / "r.pkl").read_bytes())["final"]
  assert final["init_params_loaded"] == 2
  assert final["init_params_fresh"] == ["Dense_1/bias", "Dense_1/kernel"]
  assert not test_outputs_doc.undocumented(set(final))          # docs/outputs.md names them
  linearized = pickle.loads((second / "lin.pkl").read_bytes())["final"]
  assert linearized["test_loss"] == pytest.approx(final["test_loss"], rel=1e-6)
  assert again["test_loss"] == linearized["test_loss"]


def test_the_transformer_starts_from_its_own_parameters(corpus, tmp_path, capsys):
  """Both entry points take --init_params: a tiny transformer's parameters load whole into the
  same transformer (bit for bit after 0 steps); an image network's file is refused."""
  import transformer
  args = [f"--training_data={corpus}", *TINY_TRANSFORMER, "--max_steps=0", "--hessian_check_gap=0",
          "--raw_data_output=", "--loss_curve_output=", "--eigs_curve_output=",
          "--eigs_se_only_output=", "--alignment_curve_output=", "--eval_curve_output="]

  def run(*more: str) -> int:
    cli.parse_flags(transformer.FLAGS, [transformer.PROG, *args, *more])
    return transformer.main([])
  first, second = tmp_path / "first.npz", tmp_path / "second.npz"
  assert run("--seed=1", f"--params_output={first}") == 0
  assert run(f"--init_params={first}", f"--params_output={second}") == 0
  assert "none freshly initialised" in capsys.readouterr().out
  old, new = params_file.read(str(first)), params_file.read(str(second))
  for a, b in zip(jax.tree.leaves(old.params), jax.tree.leaves(new.params), strict=True):
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
  _write(tmp_path / "mlp.npz")
  assert run(f"--init_params={tmp_path / 'mlp.npz'}") == 2
  assert "written by image_classification, not transformer" in capsys.readouterr().err
