"""The SAM papers' protocol end to end: a validation split, epochs, augmentation, clipping, the
moving average, the plateau schedule, early stopping and --restore_best in one run, which a
preemption and a resume leave equal to an uninterrupted run."""

import pickle

import jax
import numpy as np
import pytest

import image_classification as ic
from sam_edge.run import params_file
from tests.test_resume import final_arrays, run, run_stopped_at, without_timing

pytestmark = pytest.mark.slow       # every test here runs whole experiments

NO_PDFS = ["--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
           "--loss_curve_output="]


def test_early_stopping_restores_the_best_evaluation(mock_mnist, tmp_path, capsys):
  """On random labels the validation loss soon stops improving: the plateau schedule halves the
  step size, early stopping ends the run, and the final metrics are the best evaluation's."""
  params = tmp_path / "params.npz"
  args = [f"--tfds_data_dir={mock_mnist}", "--mlp_width=16", "--mlp_depth=2",
          "--batch_size=4", "--validation_fraction=0.25", "--eval_every_steps=1",
          "--lr_schedule=plateau", "--plateau_patience=1", "--early_stopping_patience=3",
          "--restore_best", "--max_steps=60", "--step_size=0.5", "--hessian_check_gap=0",
          f"--params_output={params}", f"--checkpoint_dir={tmp_path / 'ck'}"]
  raw = run(ic, args, tmp_path / "run")
  out = capsys.readouterr().out
  final, evaluations = raw["final"], raw["evaluations"]
  assert final["stopped_because"] == "early_stopping" and final["steps"] < 60
  assert "plateau: no better validation_loss for 1 evaluations" in out
  best = final["best_evaluation"]
  assert best["monitored"] == "validation_loss" and best["step"] > 0
  assert len(evaluations) - 1 - best["index"] == 3
  for key in ("validation_loss", "validation_error", "test_loss", "test_error"):
    assert final[key] == evaluations[best["index"]][key]
  saved = params_file.read(str(params))
  jax.tree.map(np.testing.assert_array_equal, saved.params, saved.best["params"])
  assert best["restored"] and saved.step == best["step"] < final["steps"]
  # run again with --resume (as after a failed final write): it stops at once, as it did
  again = run(ic, [*args, "--resume"], tmp_path / "again")
  assert again["final"]["steps"] == final["steps"]
  assert again["final"]["stopped_because"] == "early_stopping"
  assert without_timing(again["evaluations"]) == without_timing(evaluations)
  assert again["final"]["test_error"] == final["test_error"]


def test_the_protocol_run_resumes_equal_to_an_uninterrupted_one(real_tfds, tmp_path, capsys):
  base = [f"--tfds_data_dir={real_tfds}", "--dataset=fashion_mnist", "--nn_architecture=MLP",
          "--mlp_width=16", "--mlp_depth=2", "--loss=cross_entropy", "--batch_size=32",
          "--mini_training_set_num_batches=10", "--mini_test_set_num_batches=4",
          "--validation_fraction=0.1", "--num_epochs=2", "--eval_every_epochs=0.12",
          "--augment=flip,crop,cutout", "--cutout_size=8", "--clip_grad_norm=5",
          "--ema_decay=0.999", "--lr_schedule=plateau", "--plateau_patience=1",
          "--early_stopping_patience=3", "--restore_best", "--step_size=1", "--rho=0.05",
          "--hessian_check_gap=0"]
  whole = run(ic, base + [f"--checkpoint_dir={tmp_path / 'ck_a'}"], tmp_path / "a")
  final = whole["final"]
  assert final["steps_per_epoch"] == 9 and final["validation_examples"] == 32
  # evaluations every step (0.12 epochs: 1 step); the step size was halved after step 6, the
  # run stopped early and ended with the best evaluation's parameters
  assert "plateau: no better validation_loss for 1 evaluations" in capsys.readouterr().out
  assert final["stopped_because"] == "early_stopping" and 8 < final["steps"] < 18
  assert final["test_error"] == whole["evaluations"][final["best_evaluation"]["index"]][
      "test_error"]
  e = whole["evaluations"][-1]
  assert {"validation_loss", "validation_error", "test_loss", "test_error", "train_loss",
          "train_error", "ema_test_error", "epoch"} <= set(e)
  part = run_stopped_at(ic, base + [f"--checkpoint_dir={tmp_path / 'ck_b'}"], tmp_path / "b",
                        stop_at=8)
  assert part["final"]["steps"] == 8
  resumed = run(ic, base + [f"--checkpoint_dir={tmp_path / 'ck_b'}", "--resume"], tmp_path / "c")
  assert without_timing(resumed["evaluations"]) == without_timing(whole["evaluations"])
  assert resumed["losses"] == whole["losses"]
  for key in ("steps", "stopped_because", "best_evaluation", "test_error", "validation_loss",
              "ema_test_loss"):
    assert resumed["final"][key] == final[key], key
  _, arrays_a = final_arrays(tmp_path / "ck_a")
  _, arrays_b = final_arrays(tmp_path / "ck_b")
  jax.tree.map(np.testing.assert_array_equal, arrays_a, arrays_b)
  assert pickle.loads((tmp_path / "c" / "raw.pkl").read_bytes())["final"] == resumed["final"]
