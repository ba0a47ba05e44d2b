"""SAM / gradient descent on a character-level transformer (Haiku) with Hessian measurements.

    python -m transformer --rho=0.1 --training_data=tinyshakespeare.txt

Without --test_data the last 10% (--test_fraction) of the training data is held out. Unlike the
reference, --hessian_check_gap defaults to a value that measures (0.05 h); 0 (with no
--measure_every_steps) turns measurements off. Ends with `test_loss: X`. Importing this module
only defines its flags (`sam_edge.tasks.text_task`).
"""

import sys

from sam_edge.cli import main as cli
from sam_edge.tasks.text_task import TASK

PROG = TASK.prog


def flag_values():
  """A fresh FlagValues with every flag of this entry point (what FLAGS holds)."""
  return cli.task_flags(TASK)


FLAGS = flag_values()


def problems(f) -> list[str]:
  """Every problem with the flags and the corpus files, before anything is compiled (one line
  each)."""
  return cli.problems(TASK, f)


def main(argv: list[str]) -> int:
  """Runs the experiment with the flags already parsed into FLAGS; returns the exit code."""
  del argv
  return cli.task_main(TASK, FLAGS)


if __name__ == "__main__":
  sys.exit(cli.entry(TASK, FLAGS))
