"""The held-out validation split (--validation_fraction), budgets in epochs (--num_epochs,
--eval_every_epochs, --warmup_epochs), the top-5 error and the training loss of evaluations."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import image_classification as ic
import transformer
from sam_edge.cli import epochs
from sam_edge.cli import flags as cli_flags
from sam_edge.cli import main as cli
from sam_edge.data import validation
from sam_edge.models import losses
from sam_edge.tasks import image_problem
from tests.helpers import NUM_MOCK
from tests.helpers import TINY_TRANSFORMER as TINY

SMALL_MLP = ["--nn_architecture=MLP", "--mlp_width=8", "--mlp_depth=2"]
NO_PDFS = ["--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
           "--loss_curve_output="]


def test_stratified_split_holds_out_exactly_round_pn_in_proportion_to_each_class():
  labels = np.array([0] * 50 + [1] * 30 + [2] * 17 + [3] * 3)
  np.random.default_rng(0).shuffle(labels)
  train, held = validation.stratified_split(labels, 0.1, jax.random.PRNGKey(3))
  assert len(held) == 10 and len(train) == 90                    # floor(0.1 · 100 + 1/2)
  assert set(train).isdisjoint(held) and sorted([*train, *held]) == list(range(100))
  counts = np.bincount(labels[held], minlength=4)
  # 5, 3, 1.7, 0.3: floors 5, 3, 1, 0 and one more for the largest remainder (class 2)
  assert counts.tolist() == [5, 3, 2, 0]
  again, _ = validation.stratified_split(labels, 0.1, jax.random.PRNGKey(3))
  other, _ = validation.stratified_split(labels, 0.1, jax.random.PRNGKey(4))
  assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_quotas_sum_to_the_rounded_total():
  for counts, p in [([7, 7, 7], 0.5), ([1, 1, 1, 1], 0.3), ([10], 0.25), ([3, 0, 9], 0.9)]:
    q = validation.quotas(np.array(counts), p)
    assert q.sum() == validation.num_held_out(sum(counts), p)
    assert all(0 <= a <= c for a, c in zip(q, counts))


def test_top_k_error_by_hand():
  logits = jnp.array([[9., 8., 7., 6., 5., 4.],        # label 4 ranks 5th: inside the top 5
                      [9., 8., 7., 6., 5., 4.],        # label 5 ranks 6th: outside
                      [1., 1., 1., 1., 1., 1.],        # ties count for the label
                      [jnp.nan] * 6])                  # a diverged network is wrong
  assert losses.not_in_top_k(logits, jnp.array([4, 5, 0, 0]), 5).tolist() == [0., 1., 0., 1.]


def test_epochs_become_steps_and_clash_with_the_step_flags():
  cli.parse_flags(ic.FLAGS, ["image_classification", "--batch_size=100", "--num_epochs=3",
                             "--eval_every_epochs=0.5", "--warmup_epochs=1",
                             "--validation_fraction=0.1"])
  assert epochs.resolve(ic.FLAGS, lambda f: 5400) == ([], True)
  assert (ic.FLAGS.max_steps, ic.FLAGS.eval_every_steps, ic.FLAGS.warmup_steps) == (162, 27, 54)
  cli.parse_flags(ic.FLAGS, ["image_classification", "--batch_size=100", "--num_epochs=3",
                             "--max_steps=5"])
  assert epochs.resolve(ic.FLAGS, lambda f: 5400) == (
      ["--num_epochs and --max_steps both given: use one"], True)


def test_step_boundaries_in_epochs_fall_on_those_epochs_first_steps():
  from sam_edge.cli import config
  from sam_edge.optim import schedules
  cli.parse_flags(ic.FLAGS, ["image_classification", "--batch_size=128", "--num_epochs=200",
                             "--lr_schedule=step", "--lr_step_epochs=60,120,160",
                             "--lr_step_factor=0.2", "--step_size=0.1"])
  assert epochs.resolve(ic.FLAGS, lambda f: 50000) == ([], True)  # 390 steps per epoch
  lr = config.of_flags(ic.TASK, ic.FLAGS).run.method.optimizer.learning_rate()
  eta = lambda step: float(schedules.step_size_at(lr, step))
  for epoch, value in ((60, 0.02), (120, 0.004), (160, 0.0008)):
    assert eta(epoch * 390 - 1) == pytest.approx(value * 5)
    assert eta(epoch * 390) == pytest.approx(value)
  cli.parse_flags(ic.FLAGS, ["image_classification", "--lr_step_epochs=60"])
  assert epochs.resolve(ic.FLAGS, lambda f: 50000) == (
      ["--lr_step_epochs needs --num_epochs (the boundaries are fractions of it)"], True)


def test_image_task_counts_its_training_examples_before_loading():
  cli.parse_flags(ic.FLAGS, ["image_classification", "--dataset=fashion_mnist",
                             "--validation_fraction=0.1"])
  assert ic.problems(ic.FLAGS) == []                  # fills in the defaults
  assert ic.FLAGS.batch_size == 54000                 # full batch: what the split leaves
  assert ic.TASK.train_examples(cli_flags.flag_values(ic.FLAGS)) == 54000
  cli.parse_flags(ic.FLAGS, ["image_classification", "--batch_size=50",
                             "--mini_training_set_num_batches=4", "--validation_fraction=0.25"])
  assert ic.TASK.train_examples(cli_flags.flag_values(ic.FLAGS)) == 150


@pytest.mark.parametrize("args, flag", [(["--validation_fraction=1"], "validation_fraction"),
                                        (["--num_epochs=2", "--validation_fraction=1.5"],
                                         "validation_fraction"),
                                        (["--num_epochs=0"], "num_epochs"),
                                        (["--eval_every_epochs=-1"], "eval_every_epochs")])
def test_bad_values_are_one_line_and_exit_2(args, flag, capsys):
  cli.parse_flags(ic.FLAGS, ["image_classification", *args])
  assert ic.main([]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and f"--{flag}" in err[0]


def test_an_unreadable_corpus_is_named_also_with_a_budget_in_epochs(tmp_path, capsys):
  cli.parse_flags(transformer.FLAGS, ["transformer", f"--training_data={tmp_path / 'none.txt'}",
                                      "--num_epochs=1"])
  assert transformer.main([]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "none.txt" in err[0] and "declare" not in err[0]


def test_validation_examples_never_enter_training(mock_mnist):
  cli.parse_flags(ic.FLAGS, ["image_classification", f"--tfds_data_dir={mock_mnist}",
                             "--batch_size=4", "--validation_fraction=0.25", *SMALL_MLP])
  problem = image_problem.build(ic.TASK.config(cli_flags.flag_values(ic.FLAGS)),
                                jax.random.PRNGKey(0))
  rows = lambda split: {bytes(x) for x in np.asarray(split["image"]).reshape(
      len(split["label"]), -1)}
  train, valid = rows(problem.train_arrays), rows(problem.held_out["validation"])
  assert len(valid) == validation.num_held_out(NUM_MOCK, 0.25) == 6
  assert len(train) == NUM_MOCK - 6 and train.isdisjoint(valid)
  assert set(problem.evaluate(problem.params, problem.model_state, problem.constants)) == {
      "validation_error", "validation_loss", "validation_error_top5",
      "test_error", "test_loss", "test_error_top5"}


def test_epoch_run_records_validation_test_and_training_curves(mock_mnist, tmp_path, capsys):
  raw_path = tmp_path / "raw.pkl"
  cli.parse_flags(ic.FLAGS, [
      "image_classification", f"--tfds_data_dir={mock_mnist}", "--batch_size=4",
      "--mini_training_set_num_batches=5", "--validation_fraction=0.2", "--num_epochs=2",
      "--eval_every_epochs=1", "--hessian_check_gap=0", *SMALL_MLP, *NO_PDFS,
      f"--raw_data_output={raw_path}"])
  assert ic.main([]) == 0
  raw = pickle.loads(raw_path.read_bytes())
  final, evaluations = raw["final"], raw["evaluations"]
  # 20 kept, 4 held out, 16 trained on: 4 steps per epoch, 2 epochs
  assert final["steps"] == 8 and final["steps_per_epoch"] == 4 and final["epochs"] == 2
  assert raw["config"]["max_steps"] == 8 and raw["config"]["num_epochs"] == 2
  assert final["validation_examples"] == 4 and final["training_examples"] == 16
  assert [(e["step"], e["epoch"]) for e in evaluations] == [(0, 0.0), (4, 1.0)]
  assert "train_loss" not in evaluations[0]
  assert evaluations[1]["train_loss"] == pytest.approx(np.mean(raw["losses"]["loss"][:4]))
  errors = raw["losses"]["train_error"]
  assert len(errors) == 8 and all(e in (0, 0.25, 0.5, 0.75, 1) for e in errors)  # batches of 4
  assert evaluations[1]["train_error"] == pytest.approx(np.mean(errors[:4]))
  for key in ("validation_error", "validation_loss", "test_error", "test_loss"):
    assert all(np.isfinite(e[key]) for e in evaluations) and np.isfinite(final[key])
  assert "validation error:" in capsys.readouterr().out


@pytest.mark.slow
def test_text_validation_split_is_held_out_and_evaluated(corpus, tmp_path, capsys):
  raw_path = tmp_path / "raw.pkl"
  cli.parse_flags(transformer.FLAGS, [
      "transformer", f"--training_data={corpus}", *TINY, "--validation_fraction=0.1",
      "--max_steps=2", "--eval_every_steps=1", "--hessian_check_gap=0", *NO_PDFS,
      f"--raw_data_output={raw_path}"])
  assert transformer.main([]) == 0
  assert "holding out the last 10% of the training text" in capsys.readouterr().out
  raw = pickle.loads(raw_path.read_bytes())
  assert raw["final"]["validation_windows"] > 0
  assert {"validation_loss", "validation_error", "test_loss", "train_loss", "train_error"} <= set(
      raw["evaluations"][1])
