"""Many devices and hosts, simulated on the CPU: the same run on 4 devices as on 1, resumed on 4,
on two jax.distributed processes; measurements on a fixed, chunked set."""

import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, TINY_TRANSFORMER

pytestmark = pytest.mark.slow       # every test here runs whole experiments

TEXT = [*TINY_TRANSFORMER, "--max_steps=4",
        "--measure_every_steps=2", "--num_principal_components=2"]
IMAGE = ["--mlp_width=16", "--mlp_depth=3", "--batch_size=24", "--max_steps=4",
         "--measure_every_steps=2", "--lanczos_max_steps=15", "--num_principal_components=2",
         "--rho=0.05"]
NO_PDFS = ["--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
           "--loss_curve_output="]


def env(devices: int) -> dict:
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                       f"--xla_force_host_platform_device_count={devices}".strip()}


def run(cmd: list[str], devices: int, folder, name: str, *extra) -> dict:
  raw = folder / f"{name}.pkl"
  proc = subprocess.run([sys.executable, *cmd, *NO_PDFS, f"--raw_data_output={raw}", *extra],
                        cwd=REPO, env=env(devices), capture_output=True, text=True, timeout=400)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return pickle.loads(raw.read_bytes())


def text_cmd(corpus) -> list[str]:
  return ["-m", "transformer", f"--training_data={corpus}", *TEXT]


def image_cmd(folder) -> list[str]:
  return ["tests/mock_entry.py", str(folder / "tfds"), *IMAGE]


def assert_same_run(a: dict, b: dict) -> None:
  """Losses to 1e-5 relative, eigenvalues to 1e-4."""
  assert a["losses"]["step"] == b["losses"]["step"]
  np.testing.assert_allclose(a["losses"]["loss"], b["losses"]["loss"], rtol=1e-5)
  assert [r["step"] for r in a["records"]] == [r["step"] for r in b["records"]]
  for x, y in zip(a["records"], b["records"]):
    np.testing.assert_allclose(x["eigenvalues"], y["eigenvalues"], rtol=1e-4)


def run_in_process(module, args: list[str], folder, name: str, *extra) -> dict:
  """The same run in this process (one CPU device)."""
  from sam_edge.cli import main as cli
  raw = folder / f"{name}.pkl"
  cli.parse_flags(module.FLAGS, [module.PROG, *args, *NO_PDFS, f"--raw_data_output={raw}",
                                 *extra])
  assert module.main([]) == 0
  return pickle.loads(raw.read_bytes())


def text_in_process(corpus, folder, name, *extra) -> dict:
  import transformer
  return run_in_process(transformer, [f"--training_data={corpus}", *TEXT], folder, name, *extra)


@pytest.fixture(scope="module")
def text_on_one_device(corpus, tmp_path_factory) -> dict:
  """The tiny transformer of TEXT on this process's one device: the run the sharded ones equal."""
  return text_in_process(corpus, tmp_path_factory.mktemp("one_device"), "one")


def test_four_devices_equal_one_image(mock_mnist, tmp_path):
  """A full-batch MLP (SAM): the batch sharded over 4 devices (the 4-device run a process of its
  own, on the same mocked MNIST)."""
  import image_classification
  one = run_in_process(image_classification, [f"--tfds_data_dir={mock_mnist}", *IMAGE],
                       tmp_path, "one")
  four = run(image_cmd(tmp_path), 4, tmp_path, "four")
  assert one["environment"]["mesh"]["devices"] == 1
  assert four["environment"]["mesh"]["devices"] == 4 and four["environment"]["device_count"] == 4
  assert_same_run(one, four)


def test_four_devices_and_two_of_four_equal_one_text(text_on_one_device, corpus, tmp_path):
  """An SGD transformer: the batch sharded over 4 devices, and over 2 of 4 (--num_devices)."""
  one = text_on_one_device
  four = run(text_cmd(corpus), 4, tmp_path, "four")
  assert one["environment"]["mesh"]["devices"] == 1
  assert four["environment"]["mesh"]["devices"] == 4 and four["environment"]["device_count"] == 4
  assert_same_run(one, four)
  half = run(text_cmd(corpus), 4, tmp_path, "two", "--num_devices=2")
  assert half["environment"]["mesh"]["devices"] == 2
  assert_same_run(one, half)


def test_checkpoint_on_four_devices_and_resume_on_four(corpus, tmp_path):
  whole = run(text_cmd(corpus), 4, tmp_path, "whole", "--max_steps=6",
              f"--checkpoint_dir={tmp_path / 'ck_a'}")
  run(text_cmd(corpus), 4, tmp_path, "part", "--max_steps=3",
      f"--checkpoint_dir={tmp_path / 'ck_b'}")
  resumed = run(text_cmd(corpus), 4, tmp_path, "resumed", "--max_steps=6", "--resume",
                f"--checkpoint_dir={tmp_path / 'ck_b'}")
  assert resumed["environment"]["resumed_from_step"] == 3
  assert resumed["losses"] == whole["losses"]
  strip = lambda records: [{k: v for k, v in r.items() if k not in ("seconds", "time")}
                           for r in records]
  assert strip(resumed["records"]) == strip(whole["records"])


def test_a_batch_the_devices_do_not_divide_is_one_line(corpus, tmp_path):
  proc = subprocess.run([sys.executable, *text_cmd(corpus), "--batch_size=6", *NO_PDFS,
                         f"--raw_data_output={tmp_path / 'raw.pkl'}"],
                        cwd=REPO, env=env(4), capture_output=True, text=True, timeout=200)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr
  assert "--batch_size=6" in lines[0] and "4 devices" in lines[0]


def run_two_processes(command: list[str]) -> list[tuple[str, str]]:
  """`command` as processes 0 and 1 of a jax.distributed run on localhost, one CPU device each;
  both must exit 0: their (stdout, stderr)."""
  port = free_port()
  procs = [subprocess.Popen(
      [*command, f"--coordinator_address=localhost:{port}", "--num_processes=2",
       f"--process_id={i}"], cwd=REPO, env=env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in (0, 1)]
  try:
    outs = [p.communicate(timeout=400) for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_give_the_one_device_result(text_on_one_device, corpus, tmp_path):
  """jax.distributed on localhost, one CPU device per process: the batch split between them."""
  one = text_on_one_device
  outs = run_two_processes([sys.executable, *text_cmd(corpus), *NO_PDFS,
                            f"--raw_data_output={tmp_path / 'mp.pkl'}"])
  assert "test_loss:" in outs[1][0]
  two = pickle.loads((tmp_path / "mp.pkl").read_bytes())      # written by process 0 alone
  assert two["environment"]["process_count"] == 2 and two["environment"]["mesh"]["devices"] == 2
  assert_same_run(one, two)


def test_measure_examples_chunked_equals_unchunked(corpus, tmp_path, capsys):
  """The first 32 windows, 8 at a time, against all 32 at once: the same records to 1e-5."""
  common = ["--measure_examples=32", "--max_steps=3", "--lanczos_tol=1e-6"]
  whole = text_in_process(corpus, tmp_path, "whole", *common, "--measure_chunk=32")
  chunked = text_in_process(corpus, tmp_path, "chunked", *common, "--measure_chunk=8")
  batch = text_in_process(corpus, tmp_path, "batch", "--max_steps=3")
  for x, y in zip(whole["records"], chunked["records"]):
    np.testing.assert_allclose(x["eigenvalues"], y["eigenvalues"], rtol=1e-5)
    for key in ("loss", "grad_norm", "sam_edge"):
      assert x[key] == pytest.approx(y[key], rel=1e-5), key
    # |cos| lies in [0, 1]: float32 sums in another order move a small one by ~1e-8
    assert x["g_alignment"] == pytest.approx(y["g_alignment"], abs=1e-6)
  # ... and the fixed set is not the training batch of the step.
  assert whole["records"][0]["loss"] != pytest.approx(batch["records"][0]["loss"], rel=1e-3)
