"""Runs `python -m image_classification ARGS` streamed from two ArrayRecord files of JPEGs (as
`--dataset=mnist`, 10 classes) in a fresh process (for tests that need processes of their own:
several simulated devices, several jax.distributed processes).

    python tests/stream_entry.py TRAIN_FILE TEST_FILE ARGS...
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import image_classification  # noqa: E402
from sam_edge.cli import main as cli  # noqa: E402
from sam_edge.data import stream_sources  # noqa: E402
from sam_edge.tasks import image_stream  # noqa: E402


def main() -> int:
  train, test = (stream_sources.ImageRecords((path,)) for path in sys.argv[1:3])
  sources = image_stream.Sources(train, test, 10)
  image_stream.open_sources = lambda f, log: sources
  cli.parse_flags(image_classification.FLAGS, [image_classification.PROG, *sys.argv[3:]])
  return image_classification.main([])


if __name__ == "__main__":
  sys.exit(main())
