"""The character-level language-model task as the command line sees it: its flags, their checks,
the corpus read and checked before anything is compiled (ASCII, no NUL, enough windows), its
defaults and title. `text_problem.build` builds the transformer inside the run.
"""

from typing import Any, NamedTuple, Optional

import numpy as np
from absl import flags

from sam_edge import errors, options
from sam_edge.data import text
from sam_edge.tasks import text_config
from sam_edge.tasks.task import Defaults, Task

TEST_BATCHES = ("reference", "all")


class Windows(NamedTuple):
  """The corpus cut into windows: training and test windows, uint8 [W, T+1], the test part's
  length in characters (the reference counts its test batches by it) and the validation windows
  (None without --validation_fraction)."""
  train: np.ndarray
  test: np.ndarray
  test_characters: int
  validation: Optional[np.ndarray] = None


def define_flags(fv: flags.FlagValues) -> None:
  """The transformer task's own flags on `fv`: its corpus and its model (their --help topics)."""
  on = {"flag_values": fv}
  with options.topic(fv, "data"):
    flags.DEFINE_string("training_data", None, "ASCII text corpus to train on (required).", **on)
    flags.DEFINE_string("test_data", None, "ASCII text corpus for the test loss (default: the last "
                        "--test_fraction of --training_data).", **on)
    flags.DEFINE_float("test_fraction", 0.1, "Share of --training_data held out when --test_data "
                       "is not given.", **on)
    flags.DEFINE_integer("sequence_length", 64, "Characters of context (windows are one longer).",
                         **on)
    flags.DEFINE_enum("test_batches", "reference", list(TEST_BATCHES),
                      "The test loss: reference (the reference's: the mean of the per-batch losses "
                      "of ⌊characters/(B·T)⌋ test batches drawn through the shuffle buffer) or all "
                      "(the mean over every test window).", **on)
  with options.topic(fv, "model"):
    flags.DEFINE_integer("num_layers", 6, "Transformer blocks.", **on)
    flags.DEFINE_integer("num_heads", 8, "Attention heads.", **on)
    flags.DEFINE_integer("key_size", 32, "Size of each attention head's keys.", **on)
    flags.DEFINE_integer("model_size", 128, "Width of the residual stream.", **on)
  flags.mark_flag_as_required("training_data", flag_values=fv)


def problems(f: Any) -> list[str]:
  """Problems with the model and split flags (the corpus is checked by `load_windows`)."""
  p = []
  for name in ("num_layers", "num_heads", "key_size", "model_size", "sequence_length"):
    if getattr(f, name) < 1:
      p.append(f"--{name} must be at least 1, got {getattr(f, name)}")
  if not 0 < f.test_fraction < 1:
    p.append(f"--test_fraction must be between 0 and 1 (exclusive), got {f.test_fraction}")
  return p


def load_windows(f: Any, log=print) -> Windows:
  """Reads and checks the corpus (or corpora) of `f` (the flags, or `text_config.TextData`): the
  training and test windows, uint8 [W, T+1].

  Without --test_data the last --test_fraction of --training_data is held out.
  Raises errors.InputError with one line naming the file and the problem.
  """
  try:
    corpus = text.read_corpus(f.training_data)
    if f.test_data:
      train, test, test_path = corpus, text.read_corpus(f.test_data), f.test_data
    else:
      train, test = text.split_corpus(corpus, test_fraction=f.test_fraction)
      test_path = f.training_data
      log(f"no --test_data: holding out the last {f.test_fraction:.0%} of {f.training_data} "
          f"({len(test)} characters) as test data")
    valid = None
    if f.validation_fraction:
      train, valid = text.split_corpus(train, test_fraction=f.validation_fraction)
      log(f"--validation_fraction: holding out the last {f.validation_fraction:.0%} of the "
          f"training text ({len(valid)} characters) as validation data")
      valid = text.make_windows(valid, sequence_length=f.sequence_length)
      text.check_enough_windows(valid, batch_size=f.batch_size, what="validation", minimum=1,
                                sequence_length=f.sequence_length, path=f.training_data)
    train_windows = text.make_windows(train, sequence_length=f.sequence_length)
    test_windows = text.make_windows(test, sequence_length=f.sequence_length)
    text.check_enough_windows(train_windows, batch_size=f.batch_size,
                              sequence_length=f.sequence_length, path=f.training_data,
                              num_chars=len(train))
    text.check_enough_windows(test_windows, batch_size=f.batch_size,
                              sequence_length=f.sequence_length, path=test_path, what="test",
                              minimum=1, num_chars=len(test))
  except text.CorpusError as e:
    raise errors.InputError(str(e)) from None
  if f.test_batches == "reference" and (len(test) < f.batch_size * f.sequence_length
                                         or len(test_windows) < f.batch_size):
    raise errors.InputError(
        f"--test_batches=reference needs one whole test batch: {f.batch_size} windows and "
        f"--batch_size × --sequence_length = {f.batch_size * f.sequence_length} characters "
        f"({test_path} gives {len(test_windows)} windows, {len(test)} characters); pass "
        "--test_batches=all")
  return Windows(train_windows, test_windows, len(test), valid)


def train_examples(f: Any) -> Optional[int]:
  """The training windows a run of these flags trains on (reading the corpus takes
  milliseconds); None when the corpus cannot be read (its problem is reported on its own)."""
  if not 0 <= f.validation_fraction < 1:                        # a problem of its own
    return None
  try:
    return len(load_windows(f, log=lambda line: None).train)
  except errors.InputError:
    return None


def corpus_problems(f: Any) -> list[str]:
  """The corpus's problem in one line, if any (reading and checking it takes milliseconds)."""
  try:
    load_windows(f, log=lambda line: None)
  except errors.InputError as e:
    return [str(e)]
  return []


def build(c: text_config.TextConfig, key: Any) -> Any:
  """The Problem (`text_problem.build`) of the task's part of the config, on the corpus's windows,
  read here: inside the run, where a Ctrl-C is answered at once."""
  from sam_edge.tasks import text_problem  # pylint: disable=import-outside-toplevel
  return text_problem.build(c, key, load_windows(c.data))


TASK = Task(prog="transformer",
            defaults=Defaults(step_size=0.1, batch_size=128, time_limit_in_hours=1.0,
                              hessian_check_gap=0.05, batch_order="reference"),
            define_flags=define_flags, problems=problems,
            title=lambda c: f"transformer ({c.model.num_layers} layers, "
                            f"width {c.model.model_size})",
            config=text_config.of, build=build, input_problems=corpus_problems,
            train_examples=train_examples)
