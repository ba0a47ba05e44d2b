"""Checksums (issue 24): checkpoint steps whose arrays or meta changed are unsound and the newest
sound step is used; a pickle proves its records and losses; `sam_edge.verify` reports each case
with its exit status; `compare` leaves unsound pickles out."""

import hashlib
import json
import math
import os
import pickle
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge import compare, records, verify
from sam_edge.optim import update
from sam_edge.run import checkpoints, checksums, loop, outputs
from sam_edge.studies import commands, runner
from tests.helpers import flip_a_measured_float

CONFIG = {"rho": 0.05, "seed": 3, "widths": [8, 4], "limit": math.inf}
LEAF = "['state']['params']['dense']['w']"
DAMAGED = re.compile(r"array \['(state|v_prev)'\]\S* does not match its sha256 checksum$")


def make_state(step: int) -> update.TrainState:
  """Random (incompressible) float32 params at `step`, with a momentum trace."""
  key = jax.random.PRNGKey(step)
  params = {"dense": {"w": jax.random.normal(key, (64, 64)), "b": jnp.zeros(64)}}
  state = update.init_state(params, optax.sgd(0.1, momentum=0.9))
  return state._replace(step=jnp.asarray(step, jnp.int32))


def make_progress(step: int) -> loop.Progress:
  return loop.Progress(records=[{"step": 0, "loss": 1.0 / 3.0, "eigenvalues": [2.5]}],
                       losses={"step": list(range(step)), "loss": [0.5] * step},
                       train_time=1.25, last_measure_step=0)


def save_steps(folder, steps, with_checksums=True, keep=checkpoints.MAX_TO_KEEP) -> None:
  """Steps of one run, each with v_prev = −params (so no two arrays hold the same bytes)."""
  with checkpoints.Checkpointer(str(folder), keep, checksums=with_checksums) as ck:
    for step in steps:
      state = make_state(step)
      ck.save(state, {"v1": jax.tree.map(jnp.negative, state.params)}, make_progress(step),
              CONFIG)


def largest_array_file(folder, step: int) -> str:
  """The largest file among the step's array files (Orbax's OCDBT data, zstd-compressed)."""
  found = [os.path.join(root, name) for root, _, names in
           os.walk(os.path.join(folder, str(step), checkpoints.ARRAYS_ITEM)) for name in names]
  return max(found, key=os.path.getsize)


def flip(path: str, offset: int, mask: int = 0x40) -> None:
  data = bytearray(open(path, "rb").read())
  data[offset] ^= mask
  open(path, "wb").write(bytes(data))


def flip_array_bit(folder, step: int) -> None:
  """One bit flipped (xor 0x40) in the middle of the step's largest array file: inside the
  compressed data of a random array, which zstd decodes into other values without a word."""
  path = largest_array_file(folder, step)
  flip(path, os.path.getsize(path) // 2)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_a_flipped_bit_in_an_array_file_is_found_and_named(tmp_path):
  save_steps(tmp_path / "new", [2, 4])
  save_steps(tmp_path / "old", [2, 4], with_checksums=False)
  for folder in ("new", "old"):
    flip_array_bit(tmp_path / folder, 4)
  new = checkpoints.audit(str(tmp_path / "new"))
  assert [c.step for c in new] == [2, 4] and new[0].problem is None
  assert DAMAGED.match(new[1].problem), new[1].problem
  old = checkpoints.audit(str(tmp_path / "old"))      # orbax alone reads the damage silently
  assert [(c.step, c.problem, c.note) for c in old] == [(2, None, checksums.OLD_NOTE),
                                                          (4, None, checksums.OLD_NOTE)]


def test_the_fallback_chooses_the_newest_sound_step(tmp_path):
  folder = tmp_path
  save_steps(folder, [2, 4, 6], keep=3)
  flip_array_bit(folder, 6)
  meta = str(folder / "4" / checkpoints.META_ITEM / "metadata")
  flip(meta, open(meta, "rb").read().index(b"0.3333333333333333") + 17, 0x01)   # ...3 -> ...2
  sound = checkpoints.newest_sound(str(folder))
  assert sound.step == 2 and sound.note is None and sound.config == CONFIG
  assert [s for s, _ in sound.skipped] == [6, 4]
  assert DAMAGED.match(sound.skipped[0][1]) and "meta file" in sound.skipped[1][1]
  with checkpoints.Checkpointer(str(folder)) as ck:
    template = make_state(0)
    with pytest.raises(checkpoints.Unsound, match=r"step 6 .*does not match"):
      ck.restore(template, {"v1": template.params}, step=6)
    state, _, progress, config = ck.restore(template, {"v1": template.params}, step=2)
  np.testing.assert_array_equal(state.params["dense"]["w"], make_state(2).params["dense"]["w"])
  assert progress.losses["step"] == [0, 1] and config == CONFIG


def meta_text(folder, step: int) -> str:
  return (folder / str(step) / checkpoints.META_ITEM / "metadata").read_text()


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("0.3333333333333333", "0.3333333333333332"), "meta file (progress"),
    (lambda t: t.replace('"rho": 0.05', '"rho": 0.07'), "meta file (progress"),
    (lambda t: t.replace('"sha256"', '"sha2f6"'), "holds the keys"),
    (lambda t: t.replace('"meta": "', '"meta": "0', 1), "does not match"),
    (lambda t: t[:len(t) // 2], "JSONDecodeError"),
], ids=["a digit of a record", "a flag", "the key of the checksums", "the checksum", "truncated"])
def test_a_changed_meta_file_is_unsound(tmp_path, change, message):
  save_steps(tmp_path, [4])
  text = meta_text(tmp_path, 4)
  (tmp_path / "4" / checkpoints.META_ITEM / "metadata").write_text(change(text))
  assert meta_text(tmp_path, 4) != text
  (found,) = checkpoints.audit(str(tmp_path))
  assert found.problem and message in found.problem, found.problem


def test_every_single_bit_flip_of_the_meta_file_is_found(tmp_path):
  save_steps(tmp_path, [4])
  path = str(tmp_path / "4" / checkpoints.META_ITEM / "metadata")
  original = open(path, "rb").read()
  rng = np.random.default_rng(0)
  for offset in rng.choice(len(original), size=12, replace=False):
    flip(path, int(offset), 1 << int(rng.integers(8)))
    (found,) = checkpoints.audit(str(tmp_path))
    assert found.problem, (offset, open(path, "rb").read()[offset - 20:offset + 20])
    open(path, "wb").write(original)
  assert checkpoints.audit(str(tmp_path))[0].problem is None


def test_array_digests_are_the_sha256_of_each_leafs_bytes_large_or_small():
  big = np.arange(checksums.THREAD_BYTES // 4 + 3, dtype=np.float32)       # hashed on a thread
  tree = {"a": jnp.asarray(big), "b": [jnp.ones((3, 2), jnp.bfloat16), np.int32(7)]}
  assert checksums.array_digests(tree) == {
      "['a']": hashlib.sha256(big.tobytes()).hexdigest(),
      "['b'][0]": hashlib.sha256(np.ones((3, 2), jnp.bfloat16).tobytes()).hexdigest(),
      "['b'][1]": hashlib.sha256(np.int32(7).tobytes()).hexdigest()}


def test_checksums_name_leaves_alike_with_and_without_templates(tmp_path):
  state = make_state(3)
  arrays = {"state": state, "v_prev": {"v1": state.params}}
  names = set(checksums.array_digests(arrays))
  assert LEAF in names and "['state']['opt_state'][0]['trace']['dense']['b']" in names
  save_steps(tmp_path, [3])
  meta = json.loads(meta_text(tmp_path, 3))
  assert set(meta[checksums.KEY]["arrays"]) == names
  assert meta[checksums.KEY]["meta"] == records.json_sha256(
      {"config": meta["config"], "progress": meta["progress"]})


# ---------------------------------------------------------------------------------------------
# The pickle


def test_json_sha256_is_the_documented_encoding():
  value = {"b": [1.0, 0.1, math.inf, -math.inf], "a": ("x", None, True, 3), "é": 1e-300}
  text = '{"a":["x",null,true,3],"b":[1.0,0.1,Infinity,-Infinity],"\\u00e9":1e-300}'
  assert records.json_sha256(value) == hashlib.sha256(text.encode("ascii")).hexdigest()


def finished_raw(loss: float = 0.25) -> dict:
  """A finished run's raw dict as a run writes it (numpy values inside)."""
  progress = loop.Progress(records=[{"step": 0, "loss": np.float32(loss), "eigenvalues": [
      np.float32(3.5), np.float32(1.25)], "converged": np.bool_(True)}],
      losses={"step": [0, 1], "loss": [np.float32(loss), math.nan]})
  return outputs.raw_data({"rho": 0.1}, progress, {"steps": 2, "test_loss": 1.5}, {})


def test_records_sha256_is_reproducible_from_the_pickle_alone(tmp_path):
  records.write_raw(str(tmp_path / "raw.pkl"), finished_raw())
  with open(tmp_path / "raw.pkl", "rb") as f:
    raw = pickle.load(f)
  text = json.dumps({"records": raw["records"], "losses": raw["losses"]}, sort_keys=True,
                    separators=(",", ":"))
  assert raw["final"]["records_sha256"] == hashlib.sha256(text.encode()).hexdigest()
  assert records.raw_status(raw) == (True, "1 measurements and their losses match "
                                     "final.records_sha256")


def test_raw_status_of_unfinished_old_changed_and_foreign_pickles():
  raw = finished_raw()
  unfinished = outputs.raw_data({}, loop.Progress(records=[{"step": 0}]), {}, {})
  assert unfinished["final"] == {}
  assert records.raw_status(unfinished) == (
      True, "unfinished: 1 measurements so far (the checksum is written when the run ends)")
  old = {**raw, "final": {"steps": 2}}
  assert records.raw_status(old)[0] and "before checksums existed" in records.raw_status(old)[1]
  changed = records.to_plain({**raw, "losses": {"step": [0, 1], "loss": [0.25, 0.0]}})
  assert records.raw_status(changed) == (
      False, "its records and losses do not match final.records_sha256")
  assert not records.raw_status([1, 2])[0]


def test_a_flipped_bit_in_the_pickle_is_found(tmp_path, capsys):
  path = tmp_path / "raw.pkl"
  records.write_raw(str(path), finished_raw(loss=0.7))
  data = path.read_bytes()
  flip_a_measured_float(path, float(np.float32(0.7)))
  assert verify.main([str(path)]) == 1
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == f"{path}: UNSOUND: its records and losses do not match final.records_sha256"
  assert lines[-1] == "verify: 0 of 1 items sound, 1 UNSOUND"
  path.write_bytes(data[:len(data) // 2])                          # truncated: unreadable
  assert verify.main([str(path)]) == 1
  assert "UNSOUND: cannot be read as a pickle" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# python -m sam_edge.verify and compare


def test_verify_a_checkpoint_folder_and_its_steps(tmp_path, capsys):
  save_steps(tmp_path, [2, 4])
  assert verify.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out == [f"{tmp_path / '2'}: sound: its arrays and meta match their sha256 checksums",
                 f"{tmp_path / '4'}: sound: its arrays and meta match their sha256 checksums",
                 "verify: 2 of 2 items sound"]
  flip_array_bit(tmp_path, 4)
  assert verify.main([str(tmp_path)]) == 1
  out = capsys.readouterr().out.splitlines()
  assert out[1].startswith(f"{tmp_path / '4'}: UNSOUND: array ")
  assert DAMAGED.match(out[1].split(": UNSOUND: ")[1]), out[1]
  assert verify.main([str(tmp_path / "2")]) == 0                     # one step folder
  assert capsys.readouterr().out.splitlines()[-1] == "verify: 1 of 1 items sound"
  checkpoints.quarantine(str(tmp_path), 4)                            # what --resume does
  assert verify.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[1] == (f"{tmp_path / '4.corrupt'}: not used: moved aside as unsound by an earlier "
                    "--resume")
  assert out[-1] == "verify: 1 of 1 items sound (1 not used)"


def test_verify_a_checkpoint_written_before_checksums(tmp_path, capsys):
  save_steps(tmp_path, [2], with_checksums=False)
  assert verify.main([str(tmp_path)]) == 0
  assert capsys.readouterr().out.splitlines()[0] == f"{tmp_path / '2'}: sound: {checksums.OLD_NOTE}"


def test_verify_a_run_folder_with_done_json(tmp_path, capsys):
  folder = tmp_path / "run"
  folder.mkdir()
  records.write_raw(str(folder / "raw.pkl"), finished_raw())
  save_steps(folder / "ck", [2])                  # any one subfolder with steps, or checkpoints/
  done = {"exit_code": 0, runner.PICKLE_SHA256: records.file_sha256(str(folder / "raw.pkl"))}
  (folder / commands.DONE_FILE).write_text(json.dumps(done))
  assert verify.main([str(folder)]) == 0
  assert capsys.readouterr().out.splitlines()[-1] == "verify: 3 of 3 items sound"
  records.write_raw(str(folder / "raw.pkl"), finished_raw(loss=0.5))  # sound, but another pickle
  assert verify.main([str(folder)]) == 1
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith(f"{folder / 'raw.pkl'}: sound:")
  assert out[1] == (f"{folder / 'done.json'}: UNSOUND: its pickle {folder / 'raw.pkl'} no longer "
                    "matches the pickle_sha256 in done.json (a rerun of the sweep runs it again)")


def test_verify_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  for argv, message in (([], "give at least one path"),
                        ([str(tmp_path / "missing")], "missing: no such file or folder"),
                        ([str(tmp_path / "empty")], "nothing to verify")):
    assert verify.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("verify: error:") and message in err[0], err
    assert captured.out == ""
  with pytest.raises(SystemExit) as exited:
    verify.main(["--help"])
  assert exited.value.code == 0
  assert capsys.readouterr().out.startswith(f"usage: {verify.USAGE}\n\nChecks what runs wrote")


def test_compare_leaves_out_unsound_pickles_with_one_line_each(tmp_path, capsys):
  for name, loss in (("good", 0.25), ("flipped", 0.5), ("unreadable", 0.5)):
    (tmp_path / name).mkdir()
    raw = finished_raw(loss)
    raw["config"] = {"rho": loss}
    records.write_raw(str(tmp_path / name / "raw.pkl"), raw)
  flipped = tmp_path / "flipped" / "raw.pkl"
  flip_a_measured_float(flipped)
  unreadable = tmp_path / "unreadable" / "raw.pkl"
  unreadable.write_bytes(unreadable.read_bytes()[:40])
  paths = [str(tmp_path / n) for n in ("good", "flipped", "unreadable")]
  assert compare.main([*paths, f"--out={tmp_path / 'cmp'}"]) == 1
  err = capsys.readouterr().err.splitlines()
  assert err[0] == (f"compare: skipping flipped ({flipped}): its records and losses do not match "
                    "final.records_sha256")
  assert err[1].startswith(f"compare: skipping unreadable ({unreadable}): cannot be read")
  assert len(err) == 2
  with open(tmp_path / "cmp" / "summary.csv") as f:
    assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["good"]
  assert compare.main([paths[1], f"--out={tmp_path / 'cmp2'}"]) == 1
  assert "every run is unsound" in capsys.readouterr().err
