"""Runs `python -m image_classification ARGS` on mocked MNIST in a fresh process (for tests that
need a process of their own: several simulated devices, several jax.distributed processes).

    python tests/mock_entry.py TFDS_DIR ARGS...
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import tensorflow_datasets as tfds  # noqa: E402

import image_classification  # noqa: E402
from sam_edge.cli import main as cli  # noqa: E402
from tests.helpers import NUM_MOCK, write_mock_metadata  # noqa: E402


def main() -> int:
  data_dir = pathlib.Path(sys.argv[1])
  if not data_dir.exists():
    data_dir.mkdir(parents=True)
    write_mock_metadata("mnist", data_dir)
  with tfds.testing.mock_data(num_examples=NUM_MOCK, data_dir=str(data_dir),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    cli.parse_flags(image_classification.FLAGS,
                    [image_classification.PROG, f"--tfds_data_dir={data_dir}", *sys.argv[2:]])
    return image_classification.main([])


if __name__ == "__main__":
  sys.exit(main())
