"""Every `python -m ...` command written in README.md and docs/ parses against the command's real
flags, without running it: a renamed or removed flag, a bad enum value or a number that does not
parse fails here, with the file and line of the command.

Commands are read from fenced code blocks (a trailing `\\` continues a line, `#` starts a
comment) and from inline code spans. What is checked, token by token after `python -m MODULE`:
* `--name=value`, `--name value`, `--name`, `--noname`: the flag exists; its value parses (each
  alternative of `a|b`, and for a sweep's run flags each value of an axis, as the sweep splits
  them: `studies.grid.parse`). A
  metavariable value (`DIR`, `N`, `FILE.json`, `<id>`, `${VAR}`) is not parsed.
* `[...]` around a token is a usage synopsis: the brackets are dropped. `...` stands for more.
* `--flagfile=PATH` (absl's, a path from the repository root, e.g. a file of `recipes/`): the
  file exists and each of its flag lines passes these checks.
* The entry points take no positional arguments; the other commands take paths. `--help`,
  `--helpfull` and `--flag=value` (any flag) pass.
* `python -m sam_edge.sweep [sweep flags] -- ENTRY [run flags]`: both parts are checked, the run
  flags against each entry point of `image_classification|transformer`.
"""

import dataclasses
import importlib
import os
import pathlib
import re
import shlex
from typing import Iterator, Optional

import pytest
from absl import flags

from sam_edge.cli import compilation_cache
from sam_edge.cli import main as cli
from sam_edge.studies import grid

REPO = pathlib.Path(__file__).resolve().parent.parent
ENTRY_POINTS = ("image_classification", "transformer")
COMMANDS = ENTRY_POINTS + tuple(f"sam_edge.{name}" for name in (
    "sweep", "compare", "evaluate", "landscape", "central_flow", "power_law", "verify"))
README_LINES = 200
PLACEHOLDER = "flag"                                   # `--flag=value`: any flag
FLAGFILE = "flagfile"                                  # absl's: the flags of a file
_PYTHON = re.compile(r"(^|/)python(3(\.\d+)?)?$")
_METAVARIABLE = re.compile(r"^([A-Z][A-Z0-9_]*(\.[a-z]+)?|.*[$<>{}*].*)$")
_OPERATOR = re.compile(r"^(\d*[<>]|[|&;()]+$)")     # `|`, `&&`, `;`, `>`, `2>&1`...
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


@dataclasses.dataclass(frozen=True)
class Command:
  """One documented command: where it is written, its module and its arguments."""
  where: str
  module: str
  args: tuple[str, ...]


def documents() -> list[pathlib.Path]:
  """README.md and every page under docs/ (files whose name starts with `_` are not pages)."""
  pages = sorted(p for p in (REPO / "docs").rglob("*.md") if not p.name.startswith("_"))
  return [REPO / "README.md", *pages]


def _logical_lines(path: pathlib.Path) -> Iterator[tuple[int, str]]:
  """(line number, text) of each shell line in a fenced block (continuations joined) and of each
  inline code span outside the blocks."""
  fenced, pending, start = False, "", 0
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if line.lstrip().startswith("```"):
      fenced = not fenced
      continue
    if not fenced:
      for span in _SPAN.findall(line):
        yield number, span
      continue
    if not pending:
      start = number
    if line.rstrip().endswith("\\"):
      pending += line.rstrip()[:-1] + " "
      continue
    yield start, pending + line
    pending = ""


def _tokens(text: str) -> list[str]:
  """Shell words of `text` split at white space, comments dropped."""
  lexer = shlex.shlex(text, posix=True)
  lexer.whitespace_split = True
  try:
    return list(lexer)
  except ValueError:                    # an unbalanced quote in prose
    return text.split()


def commands_in(path: pathlib.Path) -> Iterator[Command]:
  """Every `python -m MODULE ...` in the file, its arguments up to a shell operator."""
  for number, text in _logical_lines(path):
    if "-m" not in text:
      continue
    words = _tokens(text)
    for i in range(len(words) - 2):
      if _PYTHON.search(words[i]) and words[i + 1] == "-m":
        args = []
        for word in words[i + 3:]:
          if _OPERATOR.match(word):
            break
          args.append(word)
        yield Command(f"{os.path.relpath(path, REPO)}:{number}", words[i + 2], tuple(args))


def flag_values(module: str) -> flags.FlagValues:
  """A fresh FlagValues with every flag of the command `module`, as its main parses them."""
  fv = importlib.import_module(module).flag_values()
  compilation_cache.define_flag(fv)
  return fv


def _value_problem(flag: flags.Flag, value: str) -> Optional[str]:
  if _METAVARIABLE.match(value) or "..." in value:
    return None
  for v in value.split("|"):
    try:
      flag.parse(v)
    except flags.Error as e:
      return f"--{flag.name}={v}: {e}"
  return None


def _flagfile_problems(fv: flags.FlagValues, path: str) -> list[str]:
  """The problems of a `--flagfile=PATH` (a path from the repository root): the file exists and
  each of its flag lines parses (absl skips the lines starting with `#` or `//` and blank
  lines, and takes each other line, stripped, as one argument)."""
  if not path:
    return [f"write --{FLAGFILE}=PATH"]
  if _METAVARIABLE.match(path) or "..." in path:
    return []
  file = REPO / path
  if not file.is_file():
    return [f"--{FLAGFILE}={path}: no such file (paths are from the repository root)"]
  lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()
           if line.strip() and not line.startswith(("#", "//"))]
  return [f"{path}: {p}" for p in problems(fv, tuple(lines), positional=False)]


def problems(fv: flags.FlagValues, args: tuple[str, ...], *, positional: bool) -> list[str]:
  """One line per argument of `args` that `fv` would refuse (see the module docstring)."""
  found, words = [], [w.strip("[]") for w in args]
  i = 0
  while i < len(words):
    word = words[i]
    i += 1
    if not word or "..." in word or word == "\\":
      continue
    if not word.startswith("-") or word in ("-", "--"):
      if not positional and not _METAVARIABLE.match(word):
        found.append(f"unexpected argument {word!r}")
      continue
    name, has_value, value = word.lstrip("-").partition("=")
    if word in cli.HELP or name == PLACEHOLDER:
      continue
    if name == FLAGFILE:                  # written `--flagfile=PATH`
      found += _flagfile_problems(fv, value)
      continue
    if name not in fv and name.startswith("no") and name[2:] in fv and fv[name[2:]].boolean:
      name, value, has_value = name[2:], "false", "="
    if name not in fv:
      found.append(f"--{name}: no such flag")
      continue
    flag = fv[name]
    if not has_value and not flag.boolean:
      if i >= len(words):
        found.append(f"--{name} needs a value")
        continue
      value, i = words[i], i + 1
    problem = _value_problem(flag, value or "true") if (has_value or not flag.boolean) \
        else None
    if problem:
      found.append(problem)
  return found


def command_problems(command: Command) -> list[str]:
  """Every problem of one documented command."""
  if command.module not in COMMANDS:
    return [f"python -m {command.module}: not a command of sam-edge"] \
        if command.module.split(".")[0] in ("sam_edge", *ENTRY_POINTS) else []
  args = command.args
  if command.module != "sam_edge.sweep":
    return problems(flag_values(command.module), args,
                    positional=command.module not in ENTRY_POINTS)
  words = [w.strip("[]") for w in args]
  cut = next((i for i, w in enumerate(words) if w == "--" or w in ENTRY_POINTS), len(words))
  found = problems(flag_values("sam_edge.sweep"), args[:cut], positional=False)
  run = [w for w in args[cut:] if w != "--"]
  entries = run[0].strip("[]").split("|") if run and "..." not in run[0] else []
  for entry in entries:
    if entry in ENTRY_POINTS:
      found += _run_problems(flag_values(entry), [w.strip("[]") for w in run[1:]])
    else:
      found.append(f"after `--`: {entry!r} is not an entry point")
  return found


def _run_problems(fv: flags.FlagValues, args: list[str]) -> list[str]:
  """A sweep's run flags read as the sweep reads them (`studies.grid.parse`): the arguments
  passed through, and each value of each axis as `--flag=value`."""
  try:
    axes, template = grid.parse([a for a in args if "..." not in a])
  except grid.GridError as e:
    return [str(e)]
  passed = tuple(a for a in template if isinstance(a, str))
  return problems(fv, passed + tuple(f"--{axis.flag}={v}" for axis in axes for v in axis.values),
                  positional=False)


def all_commands() -> list[Command]:
  return [c for path in documents() for c in commands_in(path)]


def test_every_documented_command_parses_against_its_flags():
  found = all_commands()
  assert len(found) >= 20, f"only {len(found)} commands found: is the extraction broken?"
  bad = [f"{c.where}: python -m {c.module} {' '.join(c.args)}\n    {p}"
         for c in found for p in command_problems(c)]
  assert not bad, "documented commands that do not parse:\n" + "\n".join(bad)


def test_every_command_is_documented_with_a_page():
  documented = {c.module for c in all_commands()}
  assert set(COMMANDS) <= documented, set(COMMANDS) - documented
  for module in COMMANDS:
    page = REPO / "docs" / "commands" / f"{module.removeprefix('sam_edge.')}.md"
    assert page.is_file(), f"{module} has no page {page.relative_to(REPO)}"


def test_readme_is_short_and_names_the_test_commands():
  readme = (REPO / "README.md").read_text(encoding="utf-8")
  assert len(readme.splitlines()) <= README_LINES
  assert "bash run.sh test all" in readme and "bash run.sh test\n" in readme
  ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
  assert "bash run.sh test all" in ci and "mkdocs build --strict" in ci


@pytest.mark.parametrize("text, expected", [
    ("python -m image_classification --rho=0.1 --nosuch=1", ["--nosuch: no such flag"]),
    ("python -m image_classification --optimizer=sgdd", ["--optimizer=sgdd"]),
    ("python -m image_classification --rho=abc", ["--rho=abc"]),
    ("python -m image_classification --rho=RHO --out_dir=DIR", ["--out_dir: no such flag"]),
    ("python -m image_classification --noresume --nonsense", ["--nonsense: no such flag"]),
    ("python -m image_classification --mlp_width 100 stray", ["unexpected argument 'stray'"]),
    ("python -m sam_edge.sweep --out=DIR -- image_classification --rho=0,0.1,x",
     ["--rho=x"]),
    ("python -m sam_edge.sweep --out=DIR --aggregate=product|zipp -- transformer ...",
     ["--aggregate=zipp"]),
    ("python -m sam_edge.compare runs/ --out=DIR [--x_axis=auto|step|time] | tee log", []),
    ("python -m sam_edge.nothing --x=1", ["not a command of sam-edge"]),
    ("python -m pip install -r requirements.txt", []),
    ("python -m sam_edge.sweep --out=D -- image_classification|transformer --rho=0,1 --x=1",
     ["--x: no such flag", "--x: no such flag"]),
    ("python -m transformer --helpfull", []),
    ("python -m image_classification --flagfile=recipes/reference_mnist_mlp.flags --rho=0.2",
     []),
    ("python -m image_classification --flagfile=recipes/nosuch.flags", ["no such file"]),
    ("python -m sam_edge.sweep --out=D -- image_classification "
     "--flagfile=recipes/taxonomy_resnet18_w64_b128.flags --resnet_width=2,x",
     ["--resnet_width=x"]),
])
def test_the_check_catches_what_it_should(tmp_path, text, expected):
  page = tmp_path / "page.md"
  continued = text.replace(" --", " \\\n  --", 1)         # a line continued with `\`
  page.write_text(f"Type `{text}` or\n\n```\n{continued}\n```\n")
  found = list(commands_in(page))
  assert len(found) == 2 and found[0] == dataclasses.replace(found[1], where=found[0].where)
  for command in found:
    lines = command_problems(command)
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected):
      assert want in line, (line, want)
