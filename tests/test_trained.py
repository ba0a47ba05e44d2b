"""--params_output and `studies.trained`: the final parameters written (also at a time limit),
read back whole, refused when damaged, and the run's problem rebuilt from its config."""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import image_classification as ic
from sam_edge import errors, records
from sam_edge import verify as verify_cli
from sam_edge.cli import config
from sam_edge.cli import main as cli
from sam_edge.run import params_file
from sam_edge.studies import trained

TINY_MLP = ["--nn_architecture=MLP", "--mlp_width=8", "--mlp_depth=2", "--step_size=0.05",
            "--batch_size=8", "--hessian_check_gap=0", "--loss_curve_output=",
            "--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
            "--eval_curve_output="]


def _tree():
  rng = np.random.default_rng(0)
  params = {"Dense_0": {"kernel": rng.normal(size=(4, 3)).astype(np.float32),
                        "bias": np.zeros(3, np.float32)},
            "bn": {"scale": np.ones(3, np.float32)}}
  state = {"batch_stats": {"bn": {"mean": rng.normal(size=3).astype(np.float32),
                                  "var": np.ones(3, np.float32)}}}
  return params, state


def _assert_same(a, b):
  assert isinstance(b, dict) and set(a) == set(b)
  for k in a:
    if isinstance(a[k], dict):
      _assert_same(a[k], b[k])
    else:
      assert a[k].dtype == b[k].dtype
      np.testing.assert_array_equal(a[k], b[k])


def test_round_trip_file_and_run_folder(tmp_path):
  params, state = _tree()
  config = {"seed": 3, "mlp_width": 8, "manual_dir": None, "lr_step_boundaries": [0.5]}
  path = tmp_path / "params.npz"
  params_file.write(str(path), "image_classification", 7, config, params, state)
  for where in (path, tmp_path):                      # the file, or the run folder holding it
    t = trained.load(str(where))
    assert t.path == str(path) and t.task == "image_classification" and t.step == 7
    assert t.config == config
    _assert_same(params, t.params)
    _assert_same(state, t.model_state)
  empty = tmp_path / "other" / "p.npz"                  # no BatchNorm: model_state {}
  empty.parent.mkdir()
  params_file.write(str(empty), "image_classification", 1, config, params, {})
  assert trained.load(str(empty.parent)).model_state == {}


def _flip_array_byte(path, member="a0.npy"):
  with zipfile.ZipFile(path) as z:
    entries = {n: z.read(n) for n in z.namelist()}
  data = bytearray(entries[member])
  data[-1] ^= 0x01
  entries[member] = bytes(data)
  with zipfile.ZipFile(path, "w") as z:
    for n, b in entries.items():
      z.writestr(n, b)


def test_damaged_files_are_refused_in_one_line(tmp_path, capsys):
  params, state = _tree()
  path = tmp_path / "params.npz"
  params_file.write(str(path), "image_classification", 7, {"seed": 0}, params, state)
  _flip_array_byte(path)
  with pytest.raises(params_file.ParamsError, match="array a0 does not match its sha256"):
    trained.load(str(path))
  assert verify_cli.main([str(path)]) == 1
  assert "UNSOUND: array a0 does not match" in capsys.readouterr().out

  params_file.write(str(path), "image_classification", 7, {"seed": 0}, params, state)
  with zipfile.ZipFile(path) as z:
    entries = {n: z.read(n) for n in z.namelist()}
  entries["meta.npy"] = entries["meta.npy"].replace(b'"seed": 0', b'"seed": 1')
  with zipfile.ZipFile(path, "w") as z:
    for n, b in entries.items():
      z.writestr(n, b)
  with pytest.raises(params_file.ParamsError, match="meta .* does not match its sha256"):
    trained.load(str(path))

  path.write_bytes(path.read_bytes()[:200])               # cut short
  with pytest.raises(params_file.ParamsError, match="not a readable parameters file"):
    trained.load(str(path))
  with pytest.raises(params_file.ParamsError, match="no parameters file|not a readable"):
    trained.load(str(tmp_path))
  assert cli.guard("x", lambda: trained.load(str(path)) and 0) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("x: error: ") and str(path) in err[0]


def _run(args):
  cli.parse_flags(ic.FLAGS, ["image_classification", *args])
  return ic.main([])


def test_run_writes_params_and_its_problem_is_rebuilt(mock_mnist, tmp_path, capsys):
  raw, out = tmp_path / "raw.pkl", tmp_path / "params.npz"
  assert _run([f"--tfds_data_dir={mock_mnist}", *TINY_MLP, "--max_steps=3", "--seed=2",
               f"--raw_data_output={raw}", f"--params_output={out}"]) == 0
  assert str(out) in capsys.readouterr().out                  # listed among the outputs
  final = pickle.loads(raw.read_bytes())
  t = trained.load(str(out))
  assert t.step == 3 and t.task == "image_classification"
  assert t.config == final["config"] and t.model_state == {}
  # the config round-trips: the pickle's and the parameters file's values rebuild the run's own
  run = config.of_flags(ic.TASK, ic.FLAGS)
  assert config.of_values(ic.TASK, final["config"]) == run == trained.run_config(t)
  assert run.problem.model.options == (("mlp_depth", 2), ("mlp_width", 8))
  assert run.run.method.optimizer.step_size == 0.05 and run.run.seed == 2
  # a file written before a flag existed: its default, or the value runs had before it
  old = {k: v for k, v in final["config"].items() if k not in ("batch_order", "label_smoothing")}
  rebuilt = config.of_values(ic.TASK, old)
  assert rebuilt.problem.data.batch_order == "shuffled"
  assert rebuilt.problem.model.label_smoothing == 0.0 and rebuilt.run == run.run
  p = trained.problem(t, tfds_data_dir=str(mock_mnist))
  evaluation = p.evaluate(p.params, p.model_state, p.constants)
  assert evaluation["test_error"] == final["final"]["test_error"]
  batch = trained.batch(p, range(8))
  loss = float(trained.eval_loss(p)(p.params, p.model_state, batch))
  train_loss = float(p.loss_fn(p.model_state, p.constants)(p.params, batch)[0])
  assert loss == pytest.approx(train_loss, rel=1e-6)        # no BatchNorm: both modes agree


def test_params_written_at_a_time_limit(mock_mnist, tmp_path, capsys):
  out = tmp_path / "params.npz"
  assert _run([f"--tfds_data_dir={mock_mnist}", *TINY_MLP, "--max_steps=1000000",
               "--time_limit_in_hours=1e-7", f"--raw_data_output={tmp_path / 'raw.pkl'}",
               f"--params_output={out}"]) == 0
  final = pickle.loads((tmp_path / "raw.pkl").read_bytes())["final"]
  assert final["stopped_because"] != "max_steps"
  assert trained.load(str(out)).step == final["steps"]


@pytest.mark.slow
def test_resnet_params_keep_batchnorm_statistics(mock_mnist, tmp_path, capsys):
  out = tmp_path / "params.npz"
  assert _run([f"--tfds_data_dir={mock_mnist}", "--nn_architecture=ResNet20", "--batch_size=8",
               "--max_steps=2", "--hessian_check_gap=0", f"--raw_data_output={tmp_path / 'r.pkl'}",
               f"--params_output={out}", "--loss_curve_output=", "--eigs_curve_output=",
               "--eigs_se_only_output=", "--alignment_curve_output=", "--eval_curve_output="]) == 0
  final = pickle.loads((tmp_path / "r.pkl").read_bytes())["final"]
  t = trained.load(str(out))
  stats = t.model_state["batch_stats"]["stem_bn"]
  assert not np.allclose(stats["mean"], 0)                     # moved by two steps
  p = trained.problem(t, tfds_data_dir=str(mock_mnist))
  assert p.evaluate(p.params, p.model_state, p.constants)["test_error"] == final["test_error"]


def test_sweeps_write_params_into_each_run_folder():
  from sam_edge.studies import commands
  assert commands.output_files(ic.FLAGS)["params_output"] == "params.npz"
  assert "params_output" in commands.owned_flags(ic.FLAGS)


def test_transformer_runs_keep_their_parameters_too(corpus, tmp_path, capsys):
  import transformer
  out = tmp_path / "params.npz"
  cli.parse_flags(transformer.FLAGS, [
      "transformer", f"--training_data={corpus}", "--num_layers=1", "--model_size=32",
      "--num_heads=2", "--key_size=16", "--sequence_length=16", "--batch_size=8",
      "--max_steps=2", "--hessian_check_gap=0", f"--raw_data_output={tmp_path / 'raw.pkl'}",
      f"--params_output={out}", "--loss_curve_output=", "--eigs_curve_output=",
      "--eigs_se_only_output=", "--alignment_curve_output=", "--eval_curve_output="])
  assert transformer.main([]) == 0
  t = trained.load(str(out))
  assert t.task == "transformer" and t.step == 2 and t.config["model_size"] == 32
  p = trained.problem(t)
  assert p.predict is None
  with pytest.raises(errors.InputError, match="evaluation-mode"):
    trained.eval_loss(p)


def test_a_meta_whose_tree_names_a_missing_array_is_refused_in_one_line(tmp_path):
  """A sound checksum over a wrong meta (a tool's bug, not damage): still one ParamsError."""
  params, state = _tree()
  path = tmp_path / "params.npz"
  params_file.write(str(path), "image_classification", 7, {"seed": 0}, params, state)
  with np.load(path) as npz:
    arrays = {n: npz[n] for n in npz.files}
  sound = json.loads(arrays.pop(params_file.META).tobytes())

  def rewrite(change):
    meta = json.loads(json.dumps(sound))
    change(meta)
    meta["sha256"] = records.json_sha256({k: v for k, v in meta.items() if k != "sha256"})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{params_file.META: np.frombuffer(json.dumps(meta).encode(),
                                                                   np.uint8)})
    path.write_bytes(buffer.getvalue())

  rewrite(lambda m: m["tree"]["params"]["Dense_0"].update(bias="a99"))
  with pytest.raises(params_file.ParamsError, match="not a readable parameters file .*KeyError"):
    trained.load(str(path))
  rewrite(lambda m: m.pop("task"))
  with pytest.raises(params_file.ParamsError, match="KeyError"):
    trained.load(str(path))
  rewrite(lambda m: m.update(arrays=[]))
  with pytest.raises(params_file.ParamsError, match="AttributeError"):
    trained.load(str(path))
