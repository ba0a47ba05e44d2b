"""The house's shape: packages by layer, imports that point down only, no cycles, small modules,
a fast `--help`, and no production function used only by tests.

Every import counts, those inside functions too (they defer jax, not the dependency)."""

import ast
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "sam_edge"
# Lower ranks sit below higher ones; a module may import its own package and packages of lower
# rank only (two packages of the same rank never import each other).
RANKS = {"options": 0, "pytree": 0, "errors": 1, "trees": 1, "records": 1,
         "data": 2, "models": 2,
         "optim": 3, "plots": 3,
         "curvature": 4,
         "run": 5,
         "tasks": 6,
         "cli": 7,
         "studies": 8, "linear_sgd": 8, "flows": 8,
         "sweep": 9, "compare": 9, "verify": 9, "power_law": 9, "central_flow": 9, "evaluate": 9,
         "landscapes": 9, "results": 9,
         "landscape": 10}
TOP_MODULES = {"errors", "trees", "records", "options", "pytree"}
ENTRY_MODULES = {"sweep", "compare", "verify", "power_law", "central_flow", "landscape",
                 "evaluate"}
READER_MODULES = {"results"}      # for users' own scripts: `sam_edge.results.load`
MAX_LINES = 350


def modules() -> dict[str, pathlib.Path]:
  """{dotted name: path} of every module of sam_edge (packages by their __init__)."""
  out = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(REPO).with_suffix("").parts
    out[".".join(p for p in parts if p != "__init__")] = path
  return out


def imports(name: str, path: pathlib.Path) -> set[str]:
  """The sam_edge modules `name` imports, anywhere in the file."""
  found = set()
  known = modules()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("sam_edge"))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sam_edge"):
      for a in node.names:
        full = f"{node.module}.{a.name}"
        found.add(full if full in known else node.module)
  return {m for m in found if m != name and m != "sam_edge"}


def layer(module: str) -> str:
  return module.split(".")[1]


def test_the_top_level_holds_packages_and_a_few_shared_modules():
  top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
  assert top == TOP_MODULES | ENTRY_MODULES | READER_MODULES
  packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
  assert packages | top == set(RANKS)


def test_imports_point_down_only():
  wrong = []
  for name, path in modules().items():
    if name == "sam_edge":
      continue
    for target in imports(name, path):
      a, b = layer(name), layer(target)
      if a != b and RANKS[b] >= RANKS[a]:
        wrong.append(f"{name} imports {target}")
  assert not wrong, wrong


def test_no_import_cycles():
  graph = {name: imports(name, path) for name, path in modules().items()}
  state: dict[str, int] = {}

  def visit(node: str, trail: list[str]) -> None:
    state[node] = 1
    for nxt in graph.get(node, ()):
      if state.get(nxt) == 1:
        pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
      if nxt not in state:
        visit(nxt, trail + [nxt])
    state[node] = 2
  for node in graph:
    if node not in state:
      visit(node, [node])


# Below cli/, no module sees the flag namespace: tasks, models, curvature kinds and the run take
# their part of the run config (`cli.config`). These two touch absl for another reason: `options`
# defines an option on the FlagValues cli hands it; `data.stream` marks absl's global FlagValues
# parsed, which grain reads its own flags from.
ABSL_BELOW_CLI = {"sam_edge.options", "sam_edge.data.stream"}


def test_no_module_below_cli_reads_the_flags():
  readers = []
  for name, path in modules().items():
    if name == "sam_edge" or RANKS[name.split(".")[1]] >= RANKS["cli"] or name in ABSL_BELOW_CLI:
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      readers += [f"{name} imports {n}" for n in names if n.split(".")[0] == "absl"]
  assert not readers, readers


def test_no_module_is_too_long():
  long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
          if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, long


@pytest.mark.parametrize("entry", ["image_classification", "transformer"])
def test_help_imports_no_jax_orbax_or_matplotlib(entry):
  code = (f"import sys, {entry}\n"
          "heavy = [m for m in ('jax', 'orbax', 'matplotlib', 'tensorflow', 'flax', 'haiku',"
          " 'optax') if m in sys.modules]\n"
          "assert not heavy, heavy\n")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
  out = subprocess.run([sys.executable, "-m", entry, "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
  assert out.returncode == 0 and "--measure_trace" in out.stdout and "--optimizer" in out.stdout


@pytest.mark.slow          # the tool reads every file once per definition: ~15 s
def test_no_production_function_is_used_only_by_tests():
  """`../shared/tools/test_only.py`: module-level definitions no production code uses."""
  tool = REPO.parent / "shared" / "tools" / "test_only.py"
  if not tool.is_file():
    pytest.skip("../shared/tools is not beside the repository")
  # timeout: a hang guard only (46 s in the full suite on a busy 2-core machine)
  out = subprocess.run([sys.executable, str(tool), str(REPO)], capture_output=True, text=True,
                       check=True, timeout=300).stdout
  assert "test-only: none" in out and "dead: none" in out, out
