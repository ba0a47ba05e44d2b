"""The character-level language-model task as the command line sees it: its flags, their checks,
the corpus read and checked before anything is compiled (ASCII, no NUL, enough windows), its
defaults and title. `text_problem.build` builds the transformer inside the run.
"""

import dataclasses
from typing import Any, NamedTuple, Optional

import numpy as np

from sam_edge import errors, options
from sam_edge.data import text
from sam_edge.options import Option
from sam_edge.tasks import text_config
from sam_edge.tasks.task import Defaults, Task, Values, at_least, check


class Windows(NamedTuple):
  """The corpus cut into windows: training and test windows, uint8 [W, T+1], the test part's
  length in characters (the reference counts its test batches by it) and the validation windows
  (None without --validation_fraction)."""
  train: np.ndarray
  test: np.ndarray
  test_characters: int
  validation: Optional[np.ndarray] = None


DATA_OPTIONS = (
    Option("training_data", None, "ASCII text corpus to train on (required).", type=str),
    Option("test_data", None, "ASCII text corpus for the test loss (default: the last "
           "--test_fraction of --training_data).", type=str),
    Option("test_fraction", 0.1, "Share of --training_data held out when --test_data is not "
           "given.", check=check(lambda x: 0 < x < 1, "must be between 0 and 1 (exclusive)")),
    Option("sequence_length", 64, "Characters of context (windows are one longer).",
           check=at_least(1)),
    Option("test_batches", "reference", "The test loss: reference (the reference's: the mean of "
           "the per-batch losses of ⌊characters/(B·T)⌋ test batches drawn through the shuffle "
           "buffer) or all (the mean over every test window).", choices=("reference", "all")),
)
MODEL_OPTIONS = (
    Option("num_layers", 6, "Transformer blocks.", check=at_least(1)),
    Option("num_heads", 8, "Attention heads.", check=at_least(1)),
    Option("key_size", 32, "Size of each attention head's keys.", check=at_least(1)),
    Option("model_size", 128, "Width of the residual stream.", check=at_least(1)),
)


def load_windows(v: Values, log=print) -> Windows:
  """Reads and checks the corpus (or corpora) of the values `v` ({flag: value}): the
  training and test windows, uint8 [W, T+1].

  Without --test_data the last --test_fraction of --training_data is held out.
  Raises errors.InputError with one line naming the file and the problem.
  """
  def windows(chars, path, **check):                # uint8 [W, T+1], refused when too few
    cut = text.make_windows(chars, sequence_length=v["sequence_length"])
    text.check_enough_windows(cut, batch_size=v["batch_size"],
                              sequence_length=v["sequence_length"], path=path, **check)
    return cut
  try:
    corpus = text.read_corpus(v["training_data"])
    if v["test_data"]:
      train, test, test_path = corpus, text.read_corpus(v["test_data"]), v["test_data"]
    else:
      train, test = text.split_corpus(corpus, test_fraction=v["test_fraction"])
      test_path = v["training_data"]
      log(f"no --test_data: holding out the last {v['test_fraction']:.0%} of {v['training_data']} "
          f"({len(test)} characters) as test data")
    valid = None
    if v["validation_fraction"]:
      train, valid = text.split_corpus(train, test_fraction=v["validation_fraction"])
      log(f"--validation_fraction: holding out the last {v['validation_fraction']:.0%} of the "
          f"training text ({len(valid)} characters) as validation data")
      valid = windows(valid, v["training_data"], what="validation", minimum=1)
    train_windows = windows(train, v["training_data"], num_chars=len(train))
    test_windows = windows(test, test_path, what="test", minimum=1, num_chars=len(test))
  except text.CorpusError as e:
    raise errors.InputError(str(e)) from None
  if v["test_batches"] == "reference" and (len(test) < v["batch_size"] * v["sequence_length"]
                                         or len(test_windows) < v["batch_size"]):
    raise errors.InputError(
        f"--test_batches=reference needs one whole test batch: {v['batch_size']} windows and "
        f"--batch_size × --sequence_length = {v['batch_size'] * v['sequence_length']} characters "
        f"({test_path} gives {len(test_windows)} windows, {len(test)} characters); pass "
        "--test_batches=all")
  return Windows(train_windows, test_windows, len(test), valid)


def train_examples(v: Values) -> Optional[int]:
  """The training windows a run of these flags trains on (reading the corpus takes
  milliseconds); None when the corpus cannot be read (its problem is reported on its own)."""
  if not 0 <= v["validation_fraction"] < 1 or v["sequence_length"] < 1:   # problems of their own
    return None
  try:
    return len(load_windows(v, log=lambda line: None).train)
  except errors.InputError:
    return None


def corpus_problems(v: Values) -> list[str]:
  """The corpus's problem in one line, if any (reading and checking it takes milliseconds)."""
  try:
    load_windows(v, log=lambda line: None)
  except errors.InputError as e:
    return [str(e)]
  return []


def build(c: text_config.TextConfig, key: Any) -> Any:
  """The Problem (`text_problem.build`) of the task's part of the config, on the corpus's windows,
  read here: inside the run, where a Ctrl-C is answered at once."""
  from sam_edge.tasks import text_problem  # pylint: disable=import-outside-toplevel
  return text_problem.build(c, key, load_windows(dataclasses.asdict(c.data)))


TASK = Task(prog="transformer",
            defaults=Defaults(step_size=0.1, batch_size=128, time_limit_in_hours=1.0,
                              hessian_check_gap=0.05, batch_order="reference"),
            options=options.topics(data=DATA_OPTIONS, model=MODEL_OPTIONS),
            required=("training_data",),
            title=lambda c: f"transformer ({c.model.num_layers} layers, "
                            f"width {c.model.model_size})",
            config=text_config.of, build=build, input_problems=corpus_problems,
            train_examples=train_examples)
