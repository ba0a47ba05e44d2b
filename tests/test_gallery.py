"""The figure gallery (docs/gallery.md, its PNGs in docs/gallery/, drawn by docs/make_gallery.py):
every kind of figure the script declares has its section, naming the flag or file that writes it,
and its PNG; and every figure the tool writes is one of those kinds, read from the code (the
run's `FigureOutput`s, compare's file names, and every `.pdf` file name written in the package),
so that a new figure without a gallery entry fails here. Nothing is run."""

import ast
import importlib.util
import pathlib
import re
import shlex
import sys
from types import ModuleType

from sam_edge.curvature import registry
from sam_edge.plots import run as run_figures
from sam_edge.studies import report

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGE = DOCS / "gallery.md"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_TOTAL_BYTES = 1_500_000
PDF_NAME = re.compile(r"[\w./<>-]*\.pdf")


def load_script() -> ModuleType:
  """docs/make_gallery.py as a module (importing it runs nothing), leaving no __pycache__ in
  docs/ for the site to publish."""
  spec = importlib.util.spec_from_file_location("make_gallery", DOCS / "make_gallery.py")
  module = importlib.util.module_from_spec(spec)
  writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
  try:
    spec.loader.exec_module(module)
  finally:
    sys.dont_write_bytecode = writes
  return module


GALLERY = load_script()
KINDS = GALLERY.KINDS


def sections(text: str) -> dict[str, str]:
  """{PNG name: the text of the section (from its heading to the next) that shows it}."""
  found = {}
  for part in re.split(r"\n(?=#{2,3} )", text):
    for name in re.findall(r"\]\(gallery/([\w-]+)\.png\)", part):
      found[name] = part
  return found


def pdf_names_in_package() -> set[str]:
  """The file name of every `.pdf` path written as a string in sam_edge (an f-string's
  replacement fields as `<name>`, e.g. metric_vs_<axis>.pdf)."""
  names = set()
  for path in (REPO / "sam_edge").rglob("*.py"):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
      if id(node) in parts:
        continue                                   # a piece of an f-string, read with it
      if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
      elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else
                       f"<{ast.unparse(v.value)}>" for v in node.values)
      else:
        continue
      if PDF_NAME.fullmatch(text):
        names.add(text.rsplit("/", 1)[-1])
  return names


def test_kinds_are_named_once_and_drawn_by_a_stage():
  names = [k.name for k in KINDS]
  assert len(names) == len(set(names))
  assert {k.stage for k in KINDS} <= set(GALLERY.STAGES)
  assert set(GALLERY.STAGES) == set(GALLERY.STAGE_COMMANDS)


def test_every_kind_has_a_section_and_its_png():
  found = sections(PAGE.read_text(encoding="utf-8"))
  for kind in KINDS:
    assert kind.name in found, f"docs/gallery.md shows no gallery/{kind.name}.png"
    png = DOCS / "gallery" / f"{kind.name}.png"
    assert png.is_file(), f"{png} is missing: run python docs/make_gallery.py"
    assert png.read_bytes()[:8] == PNG_MAGIC
    named = f"--{kind.output}" if kind.stage == "run" else kind.output
    assert named in found[kind.name], f"the section of {kind.name} does not name {named}"


def test_the_page_and_the_folder_hold_only_the_kinds():
  names = {k.name for k in KINDS}
  assert set(sections(PAGE.read_text(encoding="utf-8"))) == names
  assert {p.stem for p in (DOCS / "gallery").glob("*")} == names


def test_the_pngs_are_small():
  total = sum((DOCS / "gallery" / f"{k.name}.png").stat().st_size for k in KINDS)
  assert total < MAX_TOTAL_BYTES


def test_every_figure_of_a_run_is_a_kind():
  run_kinds = {k.output for k in KINDS if k.stage == "run"}
  assert run_kinds == {f.flag for f in run_figures.figure_outputs(registry.KINDS)}


def test_every_figure_of_compare_is_a_kind():
  outputs = {k.output for k in KINDS if k.stage == "compare"}
  assert outputs == {report.RATIO_PDF, report.LOSS_PDF, report.PHASE_PDF,
                     report.metric_pdf("<axis>")}
  axis = GALLERY.SWEEP_AXES.split(",")[0]
  assert report.metric_pdf(axis) in {k.pdf for k in KINDS}


def test_every_pdf_the_package_names_is_a_kind():
  by_default = {f.default.rsplit("/", 1)[-1]: f.flag
                for f in run_figures.figure_outputs(registry.KINDS)}
  outputs = {k.output for k in KINDS}
  found = pdf_names_in_package()
  assert report.RATIO_PDF in found and "metric_vs_<axis>.pdf" in found      # the scan works
  missing = sorted(n for n in found if n not in outputs and by_default.get(n) not in outputs)
  assert not missing, f"figures without a gallery kind in make_gallery.KINDS: {missing}"


def _commands(text: str) -> list[str]:
  """The `python -m` lines of the page's fenced blocks, continuations joined, spaces single."""
  blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
  lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
  return [" ".join(shlex.split(line)) for line in lines if line.strip().startswith("python -m")]


def test_the_page_shows_the_scripts_commands():
  """The page's commands are the script's, with the work folder W and the data folder MNIST,
  less the run's figure and pickle paths."""
  left_out = {f"--{k.output}" for k in KINDS if k.stage == "run"} | {"--raw_data_output"}
  shown = _commands(PAGE.read_text(encoding="utf-8"))
  for name in GALLERY.STAGES:
    stage = GALLERY.STAGE_COMMANDS[name]
    argv = [a for a in stage.arguments("W", "MNIST") if a.split("=")[0] not in left_out]
    assert " ".join(shlex.split(GALLERY.typed(stage, argv))) in shown, name
