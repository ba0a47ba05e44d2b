"""JAX's persistent compilation cache (`cli.compilation_cache`): which folder, an unwritable one
never fatal, entries written whole, a sweep's runs sharing one cache, and no number changed by
it (a warm run's records bitwise equal to a cold run's)."""

import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src import compilation_cache as jax_cache

import transformer
from sam_edge.cli import checks
from sam_edge.cli import compilation_cache as cc
from sam_edge.studies import commands, summary
from tests.helpers import REPO, TINY_TRANSFORMER

HOME = {"HOME": "/home/u"}


def test_the_folder_flag_then_jax_environment_then_the_per_user_default():
  assert cc.resolve(None, HOME) == "/home/u/.cache/sam_edge/jax"
  assert cc.resolve(None, {**HOME, "XDG_CACHE_HOME": "/x"}) == "/x/sam_edge/jax"
  assert cc.resolve(None, {**HOME, cc.DIR_ENV: "/j"}) == "/j"
  assert cc.resolve(None, {**HOME, cc.ENABLE_ENV: "false"}) is None
  assert cc.resolve(None, {**HOME, cc.DIR_ENV: "/j", cc.ENABLE_ENV: "false"}) is None
  assert cc.resolve("/f", {**HOME, cc.DIR_ENV: "/j"}) == "/f"
  assert cc.resolve("/f", {**HOME, cc.ENABLE_ENV: "false"}) == "/f"      # the flag wins
  assert cc.resolve("", {**HOME, cc.DIR_ENV: "/j"}) is None                # '' turns it off


def test_the_choice_is_exported_for_jax_and_child_processes(tmp_path, capsys):
  env = {**HOME, cc.ENABLE_ENV: "false"}
  assert cc.configure(str(tmp_path / "c"), "prog", env) == str(tmp_path / "c")
  assert env[cc.DIR_ENV] == str(tmp_path / "c") and cc.ENABLE_ENV not in env
  assert env[cc.MIN_TIME_ENV] == "0" and (tmp_path / "c").is_dir()
  assert cc.configure("", "prog", env) is None
  assert cc.DIR_ENV not in env and env[cc.ENABLE_ENV] == "false"
  assert cc.resolve(None, env) is None                 # a child process keeps it off
  kept = {**HOME, cc.MIN_TIME_ENV: "2.5"}
  cc.configure(str(tmp_path / "c"), "prog", kept)
  assert kept[cc.MIN_TIME_ENV] == "2.5"                # the user's own threshold stays
  assert capsys.readouterr().err == ""


def test_an_unwritable_folder_is_one_warning_line_and_no_cache(tmp_path, capsys):
  (tmp_path / "file").write_text("not a folder")
  env = dict(HOME)
  assert cc.configure(str(tmp_path / "file" / "jax"), "prog", env) is None
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"prog: warning: the compilation cache {tmp_path}")
  assert "going on without it" in err[0]
  assert env[cc.ENABLE_ENV] == "false" and cc.DIR_ENV not in env


def test_entries_appear_whole_and_the_first_writer_wins(tmp_path):
  cache = cc.AtomicFileCache(str(tmp_path / "c"))
  assert cache.get("k") is None
  cache.put("k", b"first")
  cache.put("k", b"second")
  assert cache.get("k") == b"first"
  assert sorted(os.listdir(tmp_path / "c")) == ["k-cache"]       # no temporary file left
  mode = (tmp_path / "c" / "k-cache").stat().st_mode & 0o777
  assert mode == 0o666 & ~cc.umask()                  # as the umask says, not 0600


def test_a_write_that_fails_is_one_line_and_the_last(tmp_path, capsys):
  cache = cc.AtomicFileCache(str(tmp_path / "c"))
  (tmp_path / "c").rmdir()
  (tmp_path / "c").write_text("the folder became a file")        # every write now fails
  cache.put("a", b"1")
  cache.put("b", b"2")
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "could not write to the compilation cache" in err[0]
  assert cache.get("a") is None                          # a read that fails is a miss


def test_a_new_program_goes_through_the_atomic_store():
  """In this process (conftest configured the cache): jax's cache is the atomic store, and a
  program never compiled before is written through it."""
  written = []
  put = cc.AtomicFileCache.put
  try:
    cc.AtomicFileCache.put = lambda self, key, value: (written.append(key),
                                                                 put(self, key, value))
    salt = float(np.random.default_rng().integers(1, 2**30))          # a program of its own
    jax.jit(lambda x: jnp.sin(x) * salt)(np.ones(3, np.float32)).block_until_ready()
  finally:
    cc.AtomicFileCache.put = put
  assert isinstance(jax_cache._cache, cc.AtomicFileCache) and len(written) == 1
  assert (jax_cache._cache._path / f"{written[0]}-cache").is_file()


def test_jax_keeps_its_own_cache_where_only_it_honours_a_setting(tmp_path):
  folder = str(tmp_path / "c")
  assert not cc.keeps_jax_cache(folder)
  assert cc.keeps_jax_cache("gs://bucket/cache")
  jax.config.update("jax_compilation_cache_max_size", 10**9)
  try:
    assert cc.keeps_jax_cache(folder)             # only jax's cache evicts
  finally:
    jax.config.update("jax_compilation_cache_max_size", -1)


def test_the_folder_is_no_part_of_a_run_a_resume_or_a_sweep_compares():
  assert cc.FLAG in checks.RESUMABLE_CHANGES and cc.FLAG in summary.BOOKKEEPING
  a = ["python", "-m", "transformer", "--rho=0.1", f"--{cc.FLAG}=/a"]
  b = ["python", "-m", "transformer", "--rho=0.1"]
  assert commands.comparable(a, transformer.FLAGS) == commands.comparable(b, transformer.FLAGS)


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu", **env})


@pytest.mark.slow          # a process of its own: the flag is read at start-up
def test_an_unwritable_cache_folder_never_stops_a_run(corpus, tmp_path):
  (tmp_path / "file").write_text("not a folder")
  done = run_cli(["transformer", f"--training_data={corpus}", *TINY_TRANSFORMER,
                  "--max_steps=1", "--hessian_check_gap=0",
                  f"--compilation_cache_dir={tmp_path / 'file' / 'jax'}",
                  f"--raw_data_output={tmp_path / 'raw.pkl'}", "--eigs_curve_output=",
                  "--eigs_se_only_output=", "--alignment_curve_output=", "--loss_curve_output="],
                 {})
  assert done.returncode == 0, done.stderr[-2000:]
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "compilation cache" in lines[0] and "warning" in lines[0], lines
  assert (tmp_path / "raw.pkl").is_file()


@pytest.mark.slow
def test_a_sweeps_runs_share_the_cache_and_a_warm_run_equals_a_cold_one(corpus, tmp_path):
  """Two runs of one computation (they differ only in the time limit) in a sweep with its own
  cache folder: the first compiles and fills it, the second reads its programs from it
  (jax logs the hits), and their records and losses are bitwise equal."""
  cache, out = tmp_path / "cache", tmp_path / "sw"
  default = tmp_path / "xdg"                           # the per-user default, here unused
  done = run_cli(["sam_edge.sweep", f"--out={out}", f"--compilation_cache_dir={cache}", "--",
                  "transformer", f"--training_data={corpus}", *TINY_TRANSFORMER, "--rho=0.1",
                  "--max_steps=2", "--measure_every_steps=1",
                  "--time_limit_in_hours=1,2"],
                 {"JAX_LOG_COMPILES": "1", "XDG_CACHE_HOME": str(default)})
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  cold, warm = (out / f"time_limit_in_hours={h}" for h in (1, 2))
  hits = lambda run: (run / "log.txt").read_text().count("Persistent compilation cache hit")
  assert hits(cold) == 0 and hits(warm) > 0
  assert any(p.name.endswith("-cache") for p in cache.iterdir())
  assert not (default / "sam_edge").exists()
  a, b = (pickle.loads((run / "raw.pkl").read_bytes()) for run in (cold, warm))
  timing = ("seconds", "time")
  assert ([{k: v for k, v in r.items() if k not in timing} for r in a["records"]]
          == [{k: v for k, v in r.items() if k not in timing} for r in b["records"]])
  assert a["losses"] == b["losses"] and a["final"]["test_loss"] == b["final"]["test_loss"]
  assert len(a["records"]) == 2
