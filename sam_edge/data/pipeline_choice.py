"""`--data_pipeline`: whether a dataset is read whole into host memory or streamed (`stream`),
decided without loading anything.

  memory  every split read once, whole, as uint8 arrays (`images`); batches gathered on device
  stream  the records read, decoded and augmented batch by batch (`stream`)
  auto    memory, unless the training split decoded, D = N·H·W·C bytes (from TFDS's dataset
          info; ∞ for images of varying size), exceeds the cap C = --data_memory_cap_gb · 10⁹:
          then stream, with one line saying why
"""

import math
from typing import Optional

PIPELINES = ("auto", "memory", "stream")
DEFAULT_CAP_GB = 8.0
DEFAULT_WORKERS = 2
GB = 1e9


def choose(requested: str, decoded_bytes: float, cap_gb: float, dataset: str
           ) -> tuple[str, Optional[str]]:
  """(memory or stream, the line saying why auto streams, else None) (module doc)."""
  if requested != "auto":
    return requested, None
  if decoded_bytes <= cap_gb * GB:
    return "memory", None
  size = ("images of varying size" if math.isinf(decoded_bytes)
          else f"{decoded_bytes / GB:.3g} GB decoded")
  return "stream", (f"streaming {dataset}: its training split ({size}) exceeds "
                    f"--data_memory_cap_gb={cap_gb:g} (--data_pipeline=auto)")
