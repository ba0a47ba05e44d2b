"""SAM / gradient descent on MNIST, Fashion-MNIST, CIFAR-10/100, SVHN or ImageNet with Hessian
measurements.

    python -m image_classification --rho=0.1            # MLP on MNIST, full batch, SAM

Trains under a wall-clock limit, measures the top Hessian eigenvalue(s) against the method's edge,
the SAM-edge and 2/η on a schedule, writes PDFs and a raw pickle (see README), and prints
`Test error: X`. Importing this module only defines its flags (`sam_edge.tasks.image_task`).
"""

import sys

from sam_edge.cli import main as cli
from sam_edge.tasks.image_task import TASK

PROG = TASK.prog


def flag_values():
  """A fresh FlagValues with every flag of this entry point (what FLAGS holds)."""
  return cli.task_flags(TASK)


FLAGS = flag_values()


def problems(f) -> list[str]:
  """Every problem with the flags, before anything is loaded (one line each)."""
  return cli.problems(TASK, f)


def main(argv: list[str]) -> int:
  """Runs the experiment with the flags already parsed into FLAGS; returns the exit code."""
  del argv
  return cli.task_main(TASK, FLAGS)


if __name__ == "__main__":
  sys.exit(cli.entry(TASK, FLAGS))
