"""Checkpoints: exact round trips, step bookkeeping, config comparison, folder checks, kills."""

import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge.optim import update
from sam_edge.run import checkpoints, loop

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = {"rho": 0.05, "step_size": 0.1, "seed": 3, "model": "mlp", "widths": [8, 4],
          "max_steps": None, "use_fd": False, "time_limit": math.inf}


def make_state(step: int, optimizer: Optional[optax.GradientTransformation] = None,
               seed: int = 0) -> update.TrainState:
  """A small TrainState with random float32 params at `step` (optimizer: optax.sgd(0.1))."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  params = {"dense": {"w": jax.random.normal(k1, (3, 2), jnp.float32),
                      "b": jax.random.normal(k2, (2,), jnp.float32)},
            "scale": jnp.asarray(1.5, jnp.float32)}
  state = update.init_state(params, optimizer or optax.sgd(0.1))
  return state._replace(step=jnp.asarray(step, jnp.int32))


def make_progress(step: int) -> loop.Progress:
  """A Progress with records (lists inside), losses, NaN/inf values and -inf last_measure_time."""
  return loop.Progress(
      records=[{"step": 0, "time": 0.0, "eigenvalues": [3.25, 1.0 / 3.0], "residuals": [1e-7, 2e-6],
                "hvps": 41, "loss": 2.302585092994046, "sg_alignment": math.nan, "seconds": 0.125}],
      losses={"step": list(range(step)),
              "loss": [1.0 / (s + 1) for s in range(step - 1)] + [math.inf]},
      train_time=12.345678901234567, elapsed=20.5, last_measure_step=-1,
      last_measure_time=-math.inf)


def assert_same(a, b) -> None:
  """Recursive equality with exact types; NaN equals NaN."""
  assert type(a) is type(b), (a, b)
  if isinstance(a, dict):
    assert list(a) == list(b)
    for key in a:
      assert_same(a[key], b[key])
  elif isinstance(a, list):
    assert len(a) == len(b)
    for x, y in zip(a, b):
      assert_same(x, y)
  elif isinstance(a, float) and math.isnan(a):
    assert math.isnan(b)
  else:
    assert a == b


def assert_trees_equal(restored, original) -> None:
  """Same structure; every leaf a jax array with the original's dtype, shape and values."""
  assert jax.tree.structure(restored) == jax.tree.structure(original)
  for r, o in zip(jax.tree.leaves(restored), jax.tree.leaves(original)):
    assert isinstance(r, jax.Array)
    assert r.dtype == o.dtype and r.shape == o.shape
    np.testing.assert_array_equal(np.asarray(r), np.asarray(o))


def save(ckpt: checkpoints.Checkpointer, step: int, seed: int = 0) -> update.TrainState:
  """Saves a state/v_prev/progress at `step`; returns the state."""
  state = make_state(step, seed=seed)
  v_prev = jax.tree.map(lambda p: p * 0.5 + step, state.params)
  ckpt.save(state, v_prev, make_progress(step), CONFIG)
  return state


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1), optax.sgd(0.1, momentum=0.9)],
                         ids=["sgd", "momentum"])
def test_round_trip_is_exact(tmp_path, optimizer):
  state = make_state(7, optimizer)
  if jax.tree.leaves(state.opt_state):      # give the momentum trace non-zero values
    state = state._replace(opt_state=jax.tree.map(lambda x: x + 0.25, state.opt_state))
  v_prev = jax.tree.map(lambda p: -2.0 * p, state.params)
  progress, config = make_progress(7), dict(CONFIG)
  with checkpoints.Checkpointer(str(tmp_path / "ck")) as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.save(state, v_prev, progress, config) is True
  with checkpoints.Checkpointer(str(tmp_path / "ck")) as ckpt:
    template = make_state(0, optimizer, seed=1)
    got_state, got_v, got_progress, got_config = ckpt.restore(
        template, jax.tree.map(jnp.zeros_like, template.params))
  assert isinstance(got_state, update.TrainState)
  assert_trees_equal(got_state, state)
  assert got_state.step.dtype == jnp.int32 and int(got_state.step) == 7
  assert_trees_equal(got_v, v_prev)
  assert isinstance(got_progress, loop.Progress)
  assert_same(dataclasses.asdict(got_progress), dataclasses.asdict(progress))
  assert got_progress.last_measure_time == -math.inf
  assert_same(got_config, config)


def test_restore_from_abstract_templates(tmp_path):
  with checkpoints.Checkpointer(str(tmp_path)) as ckpt:
    state = save(ckpt, 4)
    abstract = checkpoints.abstract_tree(make_state(0))
    got_state, _, _, _ = ckpt.restore(abstract, abstract.params)
  assert_trees_equal(got_state, state)


def test_json_is_strict(tmp_path):
  with checkpoints.Checkpointer(str(tmp_path)) as ckpt:
    save(ckpt, 3)
  meta_files = [p for p in (tmp_path / "3" / checkpoints.META_ITEM).iterdir() if p.is_file()
                and p.name != "commit_success.txt"]
  assert meta_files

  def reject(constant):
    raise ValueError(f"non-standard JSON constant {constant}")
  for path in meta_files:
    json.loads(path.read_text(), parse_constant=reject)


def test_steps_max_to_keep_and_a_new_process_view(tmp_path):
  folder = str(tmp_path / "ck")
  with checkpoints.Checkpointer(folder) as ckpt:
    for step in (1, 5, 9):
      save(ckpt, step, seed=step)
      assert ckpt.latest_step() == step
    assert ckpt.all_steps() == [5, 9]
  assert sorted(os.listdir(folder)) == ["5", "9"]
  with checkpoints.Checkpointer(folder) as again:
    assert again.latest_step() == 9 and again.all_steps() == [5, 9]
    template = make_state(0)
    got_state, got_v, progress, _ = again.restore(template, template.params)
    assert int(got_state.step) == 9
    assert_trees_equal(got_state.params, make_state(9, seed=9).params)
    assert progress.losses["step"] == list(range(9))
    old_state, _, _, _ = again.restore(template, template.params, step=5)
    assert int(old_state.step) == 5


def test_saving_an_existing_step_is_skipped(tmp_path):
  with checkpoints.Checkpointer(str(tmp_path)) as ckpt:
    first = save(ckpt, 6, seed=1)
    other = make_state(6, seed=2)
    assert ckpt.save(other, other.params, loop.Progress(), {"different": True}) is False
    got_state, _, progress, config = ckpt.restore(first, first.params)
  assert_trees_equal(got_state, first)
  assert config == CONFIG and len(progress.records) == 1


def test_saving_before_the_latest_step_raises(tmp_path):
  with checkpoints.Checkpointer(str(tmp_path)) as ckpt:
    save(ckpt, 10)
    with pytest.raises(ValueError, match="later than"):
      save(ckpt, 4)
    assert ckpt.all_steps() == [10]


def test_restore_without_checkpoints_raises(tmp_path):
  with checkpoints.Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(FileNotFoundError):
      ckpt.restore(make_state(0), make_state(0).params)


def test_config_differences():
  assert checkpoints.config_differences(CONFIG, dict(CONFIG), ()) == []
  current = dict(CONFIG, rho=0.1, widths=(8, 4), seed=3.0, new_flag=1)
  del current["use_fd"]
  assert checkpoints.config_differences(CONFIG, current, ()) == ["new_flag", "rho", "use_fd"]
  assert checkpoints.config_differences(CONFIG, current, ("rho", "new_flag")) == ["use_fd"]
  assert checkpoints.config_differences({"x": math.nan}, {"x": math.nan}, ()) == []
  assert checkpoints.config_differences({"x": None}, {}, ()) == ["x"]


def test_check_checkpoint_dir(tmp_path):
  assert checkpoints.check_checkpoint_dir(str(tmp_path / "new")) is None
  empty = tmp_path / "empty"
  empty.mkdir()
  assert checkpoints.check_checkpoint_dir(str(empty)) is None
  with checkpoints.Checkpointer(str(empty)) as ckpt:
    save(ckpt, 2)
  assert checkpoints.check_checkpoint_dir(str(empty)) is None
  (empty / "notes.txt").write_text("hello")
  reason = checkpoints.check_checkpoint_dir(str(empty))
  assert reason and "notes.txt" in reason and "\n" not in reason
  a_file = tmp_path / "file"
  a_file.write_text("x")
  assert "not a folder" in checkpoints.check_checkpoint_dir(str(a_file))
  missing = tmp_path / "missing" / "ck"            # created with its parents, as every folder
  assert checkpoints.check_checkpoint_dir(str(missing)) is None
  with checkpoints.Checkpointer(str(missing)):
    pass
  assert missing.is_dir()
  reason = checkpoints.check_checkpoint_dir(str(a_file / "ck"))
  assert reason and "not a folder" in reason
  (tmp_path / "steps" / "12").mkdir(parents=True)
  (tmp_path / "steps" / "13").write_text("a file named like a step")
  assert "'13'" in checkpoints.check_checkpoint_dir(str(tmp_path / "steps"))


KILLED_SAVE = textwrap.dedent("""
    import os, sys
    import jax.numpy as jnp
    from orbax.checkpoint._src.path import async_path
    from sam_edge.optim import update
    from sam_edge.run import checkpoints, loop
    import optax

    async def killed(*args, **kwargs):    # the process dies just before its first rename
      os._exit(9)

    state = update.init_state({"w": jnp.full((4,), 2.0, jnp.float32)}, optax.sgd(0.1))
    with checkpoints.Checkpointer(sys.argv[1]) as ckpt:
      ckpt.save(state._replace(step=jnp.asarray(3, jnp.int32)), state.params, loop.Progress(), {})
      async_path.rename = killed
      ckpt.save(state._replace(step=jnp.asarray(8, jnp.int32)), state.params, loop.Progress(), {})
    """)


def test_a_kill_mid_save_leaves_the_previous_checkpoint(tmp_path):
  folder = tmp_path / "ck"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(folder)], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 9, done.stderr
  leftovers = [p.name for p in folder.iterdir() if checkpoints.TMP_SUFFIX in p.name]
  assert leftovers == ["8" + checkpoints.TMP_SUFFIX]
  (folder / "11.orbax-checkpoint-tmp-1700000000").mkdir()     # older orbax naming
  assert checkpoints.check_checkpoint_dir(str(folder)) is None
  with checkpoints.Checkpointer(str(folder)) as ckpt:
    assert ckpt.latest_step() == 3 and ckpt.all_steps() == [3]
    template = update.init_state({"w": jnp.zeros((4,), jnp.float32)}, optax.sgd(0.1))
    got_state, _, _, _ = ckpt.restore(template, template.params)
    assert int(got_state.step) == 3
    np.testing.assert_array_equal(np.asarray(got_state.params["w"]), np.full((4,), 2.0))
    assert ckpt.save(got_state._replace(step=jnp.asarray(8, jnp.int32)), got_state.params,
                     loop.Progress(), {}) is True
    assert ckpt.all_steps() == [3, 8]
  assert sorted(os.listdir(folder)) == ["3", "8"]
