"""The recipe files under recipes/ (absl flagfiles, one per published set-up): each names its entry
point and documents its source, parses with that entry point and passes its checks, and runs
two steps end to end on mock data (a mocked TFDS copy of its dataset, or a slice of
tinyshakespeare) with every flag it sets reaching the run's config."""

import contextlib
import importlib
import math
import pathlib
import pickle
import re

import pytest

from sam_edge.cli import flags as cli_flags
from sam_edge.cli import main as cli
from tests.helpers import REPO, mocked_tfds

RECIPES = sorted((REPO / "recipes").glob("*.flags"))
HEADER = re.compile(r"^# python -m (image_classification|transformer) "
                    r"--flagfile=recipes/([a-z0-9_]+)\.flags( --training_data=\S+)?$")
FLAG_LINE = re.compile(r"^--([a-z0-9_]+)(=\S+)?$")
# What every header says (the source, its figure or why there is none, the budget).
HEADER_WORDS = ("Setup", "Budget")
FIGURE_WORDS = ("Published", "Documented runs")
EPOCHS_OF_STEPS = re.compile(r"(\d+) epochs of (\d+) steps")

# The flags the two-step runs override: the data, the batch (the mock has NUM_MOCK examples),
# the budget, and no measurements nor PDFs. Everything else is the recipe's.
STEPS = 2
BATCH = {"image_classification": 4, "transformer": 8}
MOCK_BATCHES = 2                    # of BATCH images: 8 of the mock's examples, 1 or 2 steps


def lines(path: pathlib.Path) -> list[str]:
  return path.read_text(encoding="ascii").splitlines()


def entry_point(path: pathlib.Path):
  """The entry-point module the recipe's first line names."""
  match = HEADER.match(lines(path)[0])
  assert match, f"{path.name}: the first line must be `# python -m ENTRY --flagfile=...`"
  assert match.group(2) == path.stem, f"{path.name}: its first line names {match.group(2)}"
  return importlib.import_module(match.group(1))


def flags_set(path: pathlib.Path) -> list[str]:
  """The names of the flags the recipe sets, in order."""
  return [FLAG_LINE.match(line).group(1) for line in lines(path)
          if line.strip() and not line.startswith("#")]


def recipe_values(path: pathlib.Path) -> dict:
  """{flag: value} of the flags the recipe sets, parsed by its entry point as its first line
  has it (no data is read)."""
  module = entry_point(path)
  fv = module.flag_values()
  fv([module.PROG, f"--flagfile={path}", *lines(path)[0].split()[4:]])
  return {name: fv[name].value for name in flags_set(path)}


def test_there_are_recipes():
  names = {p.stem for p in RECIPES}
  assert len(names) >= 10
  assert {"reference_mnist_mlp", "reference_transformer_tinyshakespeare",
          "samtf_cifar10_resnet20_adam"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_is_a_header_then_one_flag_per_line(path):
  """absl skips only lines that start with `#` (or `//`) and blank lines, and takes the rest of
  a line as the flag's value: so no indented comments, no trailing comments, no two flags on a
  line, no flag set twice."""
  entry_point(path)
  text = lines(path)
  header = [line for line in text if line.startswith("#")]
  body = [line for line in text if line.strip() and not line.startswith("#")]
  assert text[:len(header)] == header, f"{path.name}: the header comes first, in one block"
  for line in body:
    assert FLAG_LINE.match(line), f"{path.name}: not one `--flag=value` per line: {line!r}"
  assert len(set(flags_set(path))) == len(body), f"{path.name}: a flag is set twice"
  words = " ".join(header)
  for word in HEADER_WORDS:
    assert f"# {word}" in words or f" {word}:" in words, f"{path.name}: no {word}"
  assert any(word in words for word in FIGURE_WORDS), f"{path.name}: no figure (or why none)"
  assert all(len(line) <= 100 for line in header[1:]), f"{path.name}: a header line > 100"


# The recipes whose data only the streaming pipeline reads (ImageNet).
STREAMED = [p for p in RECIPES if "--data_pipeline=stream" in p.read_text()]


def parsed(path: pathlib.Path, extra: list[str]):
  """The recipe parsed with its entry point, `extra` after it (later flags win)."""
  module = entry_point(path)
  cli.parse_flags(module.FLAGS, [module.PROG, f"--flagfile={path}", *extra])
  return module


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_passes_the_checks_of_its_entry_point(path, request):
  """Parsed as the user runs it (the transformer given all of tinyshakespeare), a recipe passes
  every check made before anything is loaded, and the flags written after it win."""
  extra = ([f"--training_data={request.getfixturevalue('shared_data') / 'tinyshakespeare.txt'}"]
           if entry_point(path).PROG == "transformer" else [])
  module = parsed(path, extra)
  assert module.problems(module.FLAGS) == []
  for name, value in recipe_values(path).items():
    assert module.FLAGS[name].value == value, name
  budget = EPOCHS_OF_STEPS.search(" ".join(lines(path)))
  if module.FLAGS.num_epochs is not None:   # the header's budget is the steps the epochs became
    assert budget, f"{path.name}: the header gives no `N epochs of M steps`"
    epochs, per_epoch = (int(x) for x in budget.groups())
    assert (module.FLAGS.num_epochs, module.FLAGS.max_steps) == (epochs, epochs * per_epoch)
  module = parsed(path, [*extra, "--rho=0.02", "--seed=7"])
  assert module.FLAGS.rho == 0.02 and module.FLAGS.seed == 7


def two_step_flags(module, path: pathlib.Path, data: pathlib.Path, raw: pathlib.Path) -> list:
  """The overrides that make `path` a two-step run on mock data."""
  fv = module.flag_values()
  quiet = [f"--{name}=" for name in sorted(fv) if name.endswith("_output")
           and name not in ("raw_data_output", "params_output")]
  common = [f"--batch_size={BATCH[module.PROG]}", "--hessian_check_gap=0",
            f"--raw_data_output={raw}", *quiet]
  if module.PROG == "transformer":
    return [f"--training_data={data}", f"--max_steps={STEPS}", *common]
  extra = [f"--tfds_data_dir={data}", f"--mini_training_set_num_batches={MOCK_BATCHES}",
           "--mini_test_set_num_batches=2", *common]
  values = recipe_values(path)
  if values.get("sam_group_size"):
    extra.append("--sam_group_size=2")           # m-sharpness kept, in groups of the small batch
  return extra + ([] if values.get("num_epochs") else [f"--max_steps={STEPS}"])


def set_epochs_for_two_steps(module) -> None:
  """A budget in epochs stays one: as many epochs as make STEPS steps of the mock's batches."""
  f = module.FLAGS
  if f.num_epochs is None:
    return
  per_epoch = module.TASK.train_examples(cli_flags.flag_values(f)) // f.batch_size
  assert per_epoch >= 1 and STEPS % per_epoch == 0, per_epoch
  f.num_epochs = STEPS // per_epoch


def dataset_of(path: pathlib.Path) -> str:
  return recipe_values(path).get("dataset", "mnist")


@contextlib.contextmanager
def recipe_data(module, path: pathlib.Path, tmp_path: pathlib.Path, corpus):
  if module.PROG == "transformer":
    yield corpus
  else:
    file_format = "array_record" if path in STREAMED else None
    with mocked_tfds(dataset_of(path), tmp_path, file_format) as data_dir:
      yield data_dir


def run_two_steps(path: pathlib.Path, tmp_path: pathlib.Path, corpus, more=()) -> dict:
  """Two steps of the recipe on mock data, `more` flags last: the raw pickle."""
  module = entry_point(path)
  raw = tmp_path / "raw.pkl"
  with recipe_data(module, path, tmp_path, corpus) as data:
    parsed(path, [*two_step_flags(module, path, data, raw), *more])
    set_epochs_for_two_steps(module)
    assert module.main([]) == 0
  return pickle.loads(raw.read_bytes())


def check_two_steps(path: pathlib.Path, result: dict, overridden=frozenset()) -> None:
  """The run took two steps with finite losses, ended with its test metric, and recorded every
  flag the recipe sets (less those overridden) with the recipe's value."""
  final, config = result["final"], result["config"]
  assert final["steps"] == STEPS
  assert len(result["losses"]["loss"]) == STEPS
  assert all(math.isfinite(x) for x in result["losses"]["loss"])
  assert final["test_loss"] > 0
  overridden = {"batch_size", "hessian_check_gap", "num_epochs", "sam_group_size", *overridden}
  for name, value in recipe_values(path).items():
    if name not in overridden:
      assert config[name] == value, name
  if config.get("label_noise"):
    assert final["noisy_labels"] == round(config["label_noise"] * final["training_examples"])


# The SAM paper's four WRN-28-10 recipes run their two steps with --nn_architecture=ResNet20,
# which keeps every other flag of theirs (the dataset's head, the augmentations, BatchNorm with
# SAM groups, the schedule, rho). As written, two steps of one of them took 162 s (basic) and
# 194 s (AA) on 2 busy CPU cores with a cold compilation cache, nearly all of it compiling
# WRN-28-10; the four compile four programs (heads, augmentations and rho differ), so they
# cannot share one, and together they would add about 12 minutes to the suite. WRN-28-10's own
# SAM step and measurement are checked in shape by test_image_recipes.py (jax.eval_shape).
WRN = [p for p in RECIPES if "--nn_architecture=WRN28_10" in p.read_text()]
SMALLER = ["--nn_architecture=ResNet20"]
OTHERS = [p for p in RECIPES if p not in WRN and p not in STREAMED]


@pytest.mark.slow
@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.stem)
def test_two_steps_of_a_recipe(path, tmp_path, request):
  corpus = request.getfixturevalue("corpus") if entry_point(path).PROG == "transformer" else None
  check_two_steps(path, run_two_steps(path, tmp_path, corpus))


@pytest.mark.slow
@pytest.mark.parametrize("path", WRN, ids=lambda p: p.stem)
def test_two_steps_of_a_wrn_recipe_on_a_smaller_network(path, tmp_path):
  result = run_two_steps(path, tmp_path, None, SMALLER)
  check_two_steps(path, result, overridden={"nn_architecture"})
  assert result["config"]["nn_architecture"] == "ResNet20"


# ImageNet's recipe (ResNet-50 at 224x224) runs its two steps as the WRN recipes do, on ResNet-20
# and 32x32 mock images, through the streaming pipeline.
@pytest.mark.slow
@pytest.mark.parametrize("path", STREAMED, ids=lambda p: p.stem)
def test_two_steps_of_a_streamed_recipe_on_a_smaller_network(path, tmp_path):
  result = run_two_steps(path, tmp_path, None, [*SMALLER, "--image_size=32"])
  check_two_steps(path, result, overridden={"nn_architecture", "image_size"})
  assert result["config"]["nn_architecture"] == "ResNet20"
