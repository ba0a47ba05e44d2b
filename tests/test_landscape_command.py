"""`python -m sam_edge.landscape`: bad input is one line and exit code 2 before any work."""

import pytest

from sam_edge import landscape


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--out={out}"], "no such file or run folder"),
    (["{run}", "--out={out}", "--directions=sideways"], "--directions=sideways: choose one of"),
    (["{run}", "--out={out}", "--dims=3"], "--dims=3: must be 1"),
    (["{run}", "--out={out}", "--grid=1"], "--grid=1: need at least 2"),
    (["{run}", "--out={blocked}/x"], "is not a folder"),
    (["{run}"], "--out=DIR is required"),
    (["{run}", "{run}", "--out={out}"], "give exactly one run folder or params file"),
    (["{run}", "--out={out}", "--range=1,-1"], "--range=1,-1: need finite lo < hi"),
    (["{run}", "--out={out}", "--range=a"], "--range=a: give two numbers"),
    (["{run}", "--out={out}", "--directions=runs", "--runs={run}"],
     "needs --runs with 2 other runs (got 1)"),
    (["{run}", "--out={out}", "--directions=runs", "--dims=1", "--runs={missing}"],
     "--runs: {missing}: no such file"),
    (["{run}", "--out={out}", "--runs={run}"], "--runs is for --directions=runs"),
    (["{run}", "--out={out}", "--examples=-1"], "--examples=-1: must be >= 0"),
    (["{run}", "--out={out}", "--chunk=-1"], "--chunk=-1: must be >= 0"),
    (["{run}", "--out={out}", "--lanczos_steps=1"], "--lanczos_steps=1: must be >= 2"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
  run = tmp_path / "run"
  run.mkdir()
  blocked = tmp_path / "file"
  blocked.write_text("")
  names = {"run": run, "out": tmp_path / "out", "missing": tmp_path / "nope", "blocked": blocked}
  argv = [a.format(**names) for a in args]
  assert landscape.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("landscape: error: "), err
  assert message.format(**names) in err[0]
  assert not (tmp_path / "out").exists()                # nothing written: no work started


def test_unknown_flag_is_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    landscape.main([str(tmp_path), f"--out={tmp_path}/o", "--girth=3"])
  assert e.value.code == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
