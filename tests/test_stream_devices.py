"""A streamed run on two jax.distributed processes (each reading only its half of every batch)
equals the run of one process reading whole batches."""

import pickle
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.test_devices import NO_PDFS, assert_same_run, env, free_port
from tests.test_stream import write_jpegs

pytestmark = pytest.mark.slow       # processes, whole experiments

STREAMED = ["--mlp_width=16", "--mlp_depth=2", "--batch_size=8", "--max_steps=6", "--rho=0.05",
            "--data_pipeline=stream", "--data_workers=0", "--measure_every_steps=3",
            "--eval_every_steps=3", "--lanczos_max_steps=10", "--num_principal_components=1",
            "--measure_examples=16"]


def command(folder, raw, *extra) -> list[str]:
  return [sys.executable, "tests/stream_entry.py", str(folder / "train.array_record"),
          str(folder / "test.array_record"), *STREAMED, *NO_PDFS, f"--raw_data_output={raw}",
          *extra]


def test_two_processes_read_halves_that_give_the_one_process_result(tmp_path):
  write_jpegs(tmp_path / "train.array_record", 64, (28, 28), seed=1)
  write_jpegs(tmp_path / "test.array_record", 24, (28, 28), seed=2)
  one = subprocess.run(command(tmp_path, tmp_path / "one.pkl"), cwd=REPO, env=env(1),
                       capture_output=True, text=True, timeout=400)
  assert one.returncode == 0, one.stderr[-3000:]
  port = free_port()
  procs = [subprocess.Popen(
      command(tmp_path, tmp_path / "two.pkl", f"--coordinator_address=localhost:{port}",
              "--num_processes=2", f"--process_id={i}"),
      cwd=REPO, env=env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in (0, 1)]
  try:
    outs = [p.communicate(timeout=400) for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  a = pickle.loads((tmp_path / "one.pkl").read_bytes())
  b = pickle.loads((tmp_path / "two.pkl").read_bytes())
  assert b["environment"]["process_count"] == 2
  assert_same_run(a, b)
  assert [e["test_error"] for e in a["evaluations"]] == [e["test_error"] for e in b["evaluations"]]
