"""A run stopped and resumed from its checkpoint equals the uninterrupted run."""

import pickle

import numpy as np

import image_classification
import transformer
from sam_edge import checkpoints, cli

TEXT_TINY = ["--num_layers=1", "--model_size=32", "--num_heads=2", "--key_size=16",
             "--sequence_length=16", "--batch_size=8", "--lanczos_max_steps=10", "--rho=0.1",
             "--num_principal_components=2", "--measure_every_steps=2"]
IMAGE_TINY = ["--mlp_width=16", "--mlp_depth=3", "--batch_size=5", "--rho=0.1",
              "--measure_every_steps=2", "--lanczos_max_steps=10", "--num_principal_components=2"]


def run(module, args, folder):
  folder.mkdir(exist_ok=True)
  outs = {"eigs_curve_output": "", "eigs_se_only_output": "", "alignment_curve_output": "",
          "loss_curve_output": "", "raw_data_output": str(folder / "raw.pkl")}
  argv = [module.PROG] + args + [f"--{k}={v}" for k, v in outs.items()]
  cli.parse_flags(module.FLAGS, argv)
  assert module.main([]) == 0
  return pickle.loads((folder / "raw.pkl").read_bytes())


def final_arrays(checkpoint_dir):
  """The parameters and optimiser state of the latest checkpoint, as numpy."""
  import jax
  with checkpoints.Checkpointer(str(checkpoint_dir)) as c:
    step = c.latest_step()
    restored = c._manager.restore(step)
  return step, jax.tree.map(np.asarray, restored["arrays"])


def without_timing(records):
  return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in records]


def check_resume_equals_uninterrupted(module, base, tmp_path, total=6, first=3):
  whole = run(module, base + [f"--max_steps={total}", f"--checkpoint_dir={tmp_path / 'ck_a'}"],
              tmp_path / "a")
  part = run(module, base + [f"--max_steps={first}", f"--checkpoint_dir={tmp_path / 'ck_b'}"],
             tmp_path / "b")
  assert part["final"]["steps"] == first and len(part["records"]) < len(whole["records"])
  resumed = run(module, base + [f"--max_steps={total}", f"--checkpoint_dir={tmp_path / 'ck_b'}",
                                "--resume"], tmp_path / "c")
  assert resumed["final"]["steps"] == total
  assert without_timing(resumed["records"]) == without_timing(whole["records"])
  assert resumed["losses"] == whole["losses"]
  step_a, arrays_a = final_arrays(tmp_path / "ck_a")
  step_b, arrays_b = final_arrays(tmp_path / "ck_b")
  assert step_a == step_b == total
  import jax
  jax.tree.map(np.testing.assert_array_equal, arrays_a, arrays_b)
  return whole, resumed


def test_transformer_resume_equals_uninterrupted(corpus, tmp_path, capsys):
  whole, resumed = check_resume_equals_uninterrupted(
      transformer, [f"--training_data={corpus}"] + TEXT_TINY, tmp_path)
  assert resumed["final"]["test_loss"] == whole["final"]["test_loss"]
  assert "resuming from the checkpoint of step 3" in capsys.readouterr().out


def test_image_resume_equals_uninterrupted(mock_mnist, tmp_path, capsys):
  whole, resumed = check_resume_equals_uninterrupted(
      image_classification, IMAGE_TINY + [f"--tfds_data_dir={mock_mnist}"], tmp_path)
  assert resumed["final"]["test_error"] == whole["final"]["test_error"]
