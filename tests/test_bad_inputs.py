"""Bad input: one error line naming the flag or file, exit code 2, nothing overwritten.

Runs both entry points in-process (their flags live in their own FlagValues); a malformed flag
exits through SystemExit(2) from the flags parser, any other problem returns 2 from main.
"""

import json
import socket

import pytest

import image_classification
import transformer
from sam_edge.cli import main as cli
from sam_edge.run import locks

OUTPUTS = ("eigs_curve_output", "eigs_se_only_output", "alignment_curve_output",
           "loss_curve_output", "raw_data_output")
SENTINEL = b"an earlier run's output"


@pytest.fixture
def files(tmp_path):
  """Paths the cases refer to: outputs already holding data, odd folders and corpora."""
  (tmp_path / "empty_dir").mkdir()
  (tmp_path / "a_dir").mkdir()
  (tmp_path / "corpus.txt").write_bytes(b"To be, or not to be, that is the question. " * 200)
  (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 " * 200)
  (tmp_path / "ckpt_other").mkdir()
  (tmp_path / "ckpt_other" / "notes.txt").write_text("not a checkpoint")
  (tmp_path / "ckpt_new").mkdir()
  (tmp_path / "readonly.pkl").write_bytes(SENTINEL)
  (tmp_path / "readonly.pkl").chmod(0o444)            # read-only on purpose (even for root)
  locked = tmp_path / "ckpt_locked"                    # held by a live process: PID 1
  locked.mkdir()
  (locked / locks.LOCK_NAME).write_text(json.dumps(
      {"pid": 1, "host": socket.gethostname(), "start": locks._start_time(1)}))
  broken = tmp_path / "ckpt_broken" / "5"              # a step that cannot be restored
  broken.mkdir(parents=True)
  (broken / "arrays").mkdir()
  (broken / "arrays" / "garbage").write_bytes(b"\0" * 10)
  outputs = {}
  for name in OUTPUTS:
    path = tmp_path / f"{name}.out"
    path.write_bytes(SENTINEL)
    outputs[name] = path
  return tmp_path, outputs


IMAGE = [  # (args, what the error line must name)
    (["--rho=-0.1"], "--rho"),
    (["--rho=nan"], "--rho"),
    (["--rho=abc"], "rho"),
    (["--step_size=0"], "--step_size"),
    (["--step_size=-1"], "--step_size"),
    (["--num_epochs=1", "--eval_every_epochs=inf"], "--eval_every_epochs"),
    (["--num_epochs=1", "--warmup_epochs=inf"], "--warmup_epochs"),
    (["--lr_schedule=step", "--max_steps=10", "--lr_step_boundaries=a,b"],
     "--lr_step_boundaries"),
    (["--lr_schedule=step", "--max_steps=10", "--lr_step_boundaries=0.5,2"],
     "--lr_step_boundaries"),
    (["--batch_size=0"], "--batch_size"),
    (["--batch_size=70000"], "--batch_size"),
    (["--mlp_depth=1"], "--mlp_depth"),
    (["--num_principal_components=0"], "--num_principal_components"),
    (["--num_principal_components=31"], "--num_principal_components"),
    (["--time_limit_in_hours=0"], "--time_limit_in_hours"),
    (["--dataset=imagenet"], "--dataset"),
    (["--nn_architecture=RNN"], "--nn_architecture"),
    (["--mini_training_set_num_batches=0"], "--mini_training_set_num_batches"),
    (["--manual_dir={tmp}/empty_dir"], "--manual_dir"),
    (["--manual_dir={tmp}/nowhere"], "--manual_dir"),
    (["--raw_data_output={tmp}/nowhere/raw.pkl"], "--raw_data_output"),
    (["--eigs_curve_output={tmp}/a_dir"], "--eigs_curve_output"),
    (["--hvp=central"], "hvp"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--seed=-1"], "--seed"),
    (["--lanczos_max_steps=100000"], "--lanczos_max_steps"),
    (["--raw_data_output={tmp}/eigs_curve_output.out"], "--raw_data_output"),
    (["--checkpoint_dir={tmp}/ckpt_other"], "--checkpoint_dir"),
    (["--checkpoint_dir={tmp}/ckpt_new", "--raw_data_output={tmp}/ckpt_new/raw.pkl"],
     "inside --checkpoint_dir"),
    (["--resume"], "--resume"),
    (["--nn_architecture=CNN", "--cnn_num_blocks=8"], "--cnn_num_blocks"),
    (["--raw_data_output={tmp}/readonly.pkl"], "--raw_data_output"),
    (["--checkpoint_dir={tmp}/ckpt_locked"], "--checkpoint_dir"),
    (["--checkpoint_dir={tmp}/ckpt_broken", "--resume"], "--resume"),
    (["--optimizer=rmsprop"], "optimizer"),
    (["--optimizer=momentum", "--momentum=1"], "--momentum"),
    (["--optimizer=adam", "--adam_b2=1.5"], "--adam_b2"),
    (["--weight_decay=-0.1"], "--weight_decay"),
    (["--clip_grad_norm=0"], "--clip_grad_norm"),
    (["--ema_decay=1"], "--ema_decay"),
    (["--ema_decay=-0.1"], "--ema_decay"),
    (["--weight_decay_in_loss"], "--weight_decay_in_loss"),
    (["--no_weight_decay_on_norm", "--weight_decay=0"], "--no_weight_decay_on_norm"),
    (["--sam=sharp"], "sam"),
    (["--rho=0.1", "--sam_group_size=7"], "--sam_group_size"),
    (["--rho=0.1", "--sam_group_size=4", "--batch_size=12", "--measure_chunk=3"],
     "--measure_chunk=3"),
    (["--rho=0.1", "--sam_group_size=4", "--batch_size=12", "--measure_examples=6"],
     "--measure_examples=6"),
    (["--label_noise=1"], "--label_noise"),
    (["--label_smoothing=-0.1"], "--label_smoothing"),
    (["--nn_architecture=ResNet20", "--regime=linearized"], "--regime"),
    (["--augment=mixup"], "augment"),
    (["--sam=gsam", "--gsam_alpha=-0.1"], "--gsam_alpha"),
    (["--sam=gsam", "--rho=0.1", "--gsam_rho_schedule=0.2"], "--gsam_rho_schedule=0.2"),
    (["--sam=gsam", "--rho=0.1", "--gsam_rho_schedule=0.01"], "--gsam_rho_schedule"),
    (["--sam=looksam", "--looksam_every=0"], "--looksam_every"),
    (["--sam=looksam", "--looksam_alpha=-1"], "--looksam_alpha"),
    (["--sam=esam", "--esam_weight_fraction=0"], "--esam_weight_fraction"),
    (["--sam=esam", "--esam_example_fraction=1.5"], "--esam_example_fraction"),
    (["--sam=esam", "--rho=0.1", "--batch_size=12", "--accumulate_batches=2"],
     "--accumulate_batches"),
    (["--sam=fisher", "--fisher_eta=-1"], "--fisher_eta"),
    (["--sam=friendly", "--friendly_lambda=1"], "--friendly_lambda"),
    (["--sam=friendly", "--friendly_sigma=-0.5"], "--friendly_sigma"),
    (["--sam=random", "--random_sam_sigma=-0.1"], "--random_sam_sigma"),
    (["--sam=random", "--random_sam_lambda=nan"], "--random_sam_lambda"),
    (["--sam=looksam", "--rho=0.1", "--sam_group_size=4", "--batch_size=12"],
     "--sam_group_size"),
    (["--sam_params=normalization"], "--sam_params"),
    (["--sam_params=weights"], "sam_params"),
    (["--accumulate_batches=0"], "--accumulate_batches"),
    (["--batch_size=12", "--accumulate_batches=5"], "--accumulate_batches=5"),
    (["--batch_size=12", "--accumulate_batches=4", "--measure_chunk=3"], "--measure_chunk"),
    (["--rho=0.1", "--batch_size=12", "--accumulate_batches=2", "--sam_group_size=3"],
     "--accumulate_batches"),
]
TEXT = [
    ([], "training_data"),
    (["--training_data={tmp}/missing.txt"], "missing.txt"),
    (["--training_data={tmp}/a_dir"], "a_dir"),
    (["--training_data={tmp}/corpus.txt", "--test_data={tmp}/latin1.txt"], "latin1.txt"),
    (["--training_data={tmp}/corpus.txt", "--sequence_length=0"], "--sequence_length"),
    (["--training_data={tmp}/corpus.txt", "--sequence_length=0", "--num_epochs=1"],
     "--sequence_length"),
    (["--training_data={tmp}/corpus.txt", "--test_fraction=1.5"], "--test_fraction"),
    (["--training_data={tmp}/corpus.txt", "--hessian_check_gap=-1"], "--hessian_check_gap"),
    (["--training_data={tmp}/corpus.txt", "--measure_every_steps=0"], "--measure_every_steps"),
    (["--training_data={tmp}/corpus.txt", "--lanczos_tol=0"], "--lanczos_tol"),
    (["--training_data={tmp}/corpus.txt", "--batch_size=5000"], "--batch_size"),
    (["--training_data={tmp}/corpus.txt", "--num_layers=0"], "--num_layers"),
    (["--training_data={tmp}/corpus.txt", "--checkpoint_every_minutes=0",
      "--checkpoint_dir={tmp}/ck"], "--checkpoint_every_minutes"),
    (["--training_data={tmp}/corpus.txt", "--checkpoint_dir={tmp}/corpus.txt"], "--checkpoint_dir"),
    (["--training_data={tmp}/corpus.txt", "--loss_curve_output={tmp}/readonly.pkl"],
     "--loss_curve_output"),
    (["--training_data={tmp}/corpus.txt", "--regime=affine"], "regime"),
    (["--training_data={tmp}/corpus.txt", "--clip_grad_norm=-1"], "--clip_grad_norm"),
]
CASES = ([pytest.param(image_classification, a, n, id="image:" + " ".join(a)) for a, n in IMAGE]
         + [pytest.param(transformer, a, n, id="text:" + " ".join(a)) for a, n in TEXT])


@pytest.mark.parametrize("module, args, names", CASES)
def test_bad_input(module, args, names, files, capsys):
  tmp, outputs = files
  defaults = [f"--{name}={path}" for name, path in outputs.items()]
  overridden = {a.split("=")[0][2:] for a in args}
  argv = [module.PROG] + [a for a in defaults if a.split("=")[0][2:] not in overridden]
  argv += [a.format(tmp=tmp) for a in args]
  try:
    cli.parse_flags(module.FLAGS, argv)
    code = module.main([])
  except SystemExit as e:
    code = e.code
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert code == 2
  assert len(err) == 1, err
  assert names in err[0] and "Traceback" not in err[0]
  for path in outputs.values():
    assert path.read_bytes() == SENTINEL      # nothing overwritten


def test_there_are_at_least_twenty_cases():
  assert len(CASES) >= 20
