"""A run stopped and resumed from its checkpoint equals the uninterrupted run."""

import pickle

import numpy as np
import pytest

import image_classification
import transformer
from sam_edge.cli import config as cli_config
from sam_edge.cli import main as cli
from sam_edge.run import checkpoints
from tests.helpers import RESNET_RECIPE, TINY_TRANSFORMER

pytestmark = pytest.mark.slow       # every test here runs whole experiments

TEXT_TINY = [*TINY_TRANSFORMER, "--rho=0.1",
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


def test_adam_transformer_resume_equals_uninterrupted(corpus, tmp_path, capsys):
  """Adam's moments and count are in the checkpoint (its preconditioned measurements too)."""
  check_resume_equals_uninterrupted(
      transformer, [f"--training_data={corpus}", "--optimizer=adam", "--step_size=0.003"]
      + TEXT_TINY, tmp_path)


def test_momentum_with_curvature_measurements_resume_equals_uninterrupted(mock_mnist, tmp_path,
                                                                            capsys):
  """Heavy-ball momentum, and the curvature kinds' warm starts (λ_min's eigenvector)."""
  check_resume_equals_uninterrupted(
      image_classification, IMAGE_TINY + [f"--tfds_data_dir={mock_mnist}", "--optimizer=momentum",
                                          "--measure_trace", "--trace_probes=6",
                                          "--measure_min_eigenvalue",
                                          "--min_eigenvalue_max_steps=10"], tmp_path)


def test_sam_paper_knobs_resume_equals_uninterrupted(mock_mnist, tmp_path, capsys):
  """The moving average of the weights is in the checkpoint (its own item) and resumes bitwise,
  with L2 in the loss, the decay mask and the clip on; evaluations and the final dict report the
  averaged network beside the trained one."""
  whole, resumed = check_resume_equals_uninterrupted(
      image_classification, IMAGE_TINY + [
          f"--tfds_data_dir={mock_mnist}", "--ema_decay=0.8", "--eval_every_steps=2",
          "--weight_decay=0.01", "--weight_decay_in_loss", "--no_weight_decay_on_norm",
          "--clip_grad_norm=0.5"], tmp_path)
  assert without_timing(resumed["evaluations"]) == without_timing(whole["evaluations"])
  for key in ("ema_test_error", "ema_test_loss"):
    assert resumed["final"][key] == whole["final"][key]
    assert all(key in e for e in whole["evaluations"])
  assert whole["final"]["ema_test_loss"] != whole["final"]["test_loss"]
  _, arrays = final_arrays(tmp_path / "ck_b")
  assert set(arrays["ema"]) == {"params", "model_state"}


def run_stopped_at(module, args, folder, stop_at):
  """A run of `args` (whose --max_steps sets the schedule's length) stopped after `stop_at` steps
  as a preemption would stop it, with its checkpoint written."""
  import dataclasses

  from sam_edge.run import experiment
  folder.mkdir(exist_ok=True)
  cli.parse_flags(module.FLAGS, [module.PROG] + args + [
      "--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
      "--loss_curve_output=", f"--raw_data_output={folder / 'raw.pkl'}"])
  assert not module.problems(module.FLAGS)
  run = cli_config.of_flags(module.TASK, module.FLAGS)
  settings = dataclasses.replace(run.run, loop=dataclasses.replace(run.run.loop,
                                                                    max_steps=stop_at))
  _, code = experiment.run(settings, lambda key: module.TASK.build(run.problem, key),
                           dict(run.values))
  assert code == 0
  return pickle.loads((folder / "raw.pkl").read_bytes())


def test_batchnorm_and_schedule_resume_equals_uninterrupted(mock_mnist, tmp_path, capsys):
  """BatchNorm statistics, a cosine schedule (whose position is the step) and the label noise of
  the ResNet-20 recipe survive a resume."""
  base = [*RESNET_RECIPE, f"--tfds_data_dir={mock_mnist}", "--hessian_check_gap=0"]
  whole = run(image_classification, base + [f"--checkpoint_dir={tmp_path / 'ck_a'}"],
              tmp_path / "a")
  part = run_stopped_at(image_classification, base + [f"--checkpoint_dir={tmp_path / 'ck_b'}"],
                        tmp_path / "b", stop_at=2)
  assert part["final"]["steps"] == 2
  resumed = run(image_classification, base + [f"--checkpoint_dir={tmp_path / 'ck_b'}",
                                              "--resume"], tmp_path / "c")
  assert without_timing(resumed["evaluations"]) == without_timing(whole["evaluations"])
  assert len(whole["evaluations"]) == 2
  assert resumed["losses"] == whole["losses"]
  assert resumed["final"]["test_error"] == whole["final"]["test_error"]
  _, arrays_a = final_arrays(tmp_path / "ck_a")
  _, arrays_b = final_arrays(tmp_path / "ck_b")
  import jax
  jax.tree.map(np.testing.assert_array_equal, arrays_a, arrays_b)     # BatchNorm stats included


@pytest.mark.parametrize("variant", [["--sam=friendly", "--friendly_lambda=0.5"],
                                     ["--sam=random", "--random_sam_sigma=0.05"],
                                     ["--sam=looksam", "--looksam_every=3"],
                                     ["--sam=msam", "--msam_momentum=0.5"]])
def test_sam_variant_state_and_draws_resume_equals_uninterrupted(variant, mock_mnist, tmp_path,
                                                                   capsys):
  """Friendly-SAM's gradient average m is in the checkpoint; Random-SAM's δ is drawn from
  (seed, step), so a resumed run draws what the uninterrupted one drew; LookSAM's g_v is in the
  checkpoint, and its SAM or reuse step is chosen on the host from the resumed step;
  Momentum-SAM's buffer m is in the checkpoint."""
  check_resume_equals_uninterrupted(
      image_classification, IMAGE_TINY + [f"--tfds_data_dir={mock_mnist}", *variant], tmp_path)
  if variant[0] in ("--sam=friendly", "--sam=msam"):
    import jax
    _, arrays = final_arrays(tmp_path / "ck_b")
    m = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(arrays["state"])
         if "['m']" in jax.tree_util.keystr(path)]           # the state's sam_state {"m": ...}
    assert m and any(np.any(leaf != 0) for leaf in m)
