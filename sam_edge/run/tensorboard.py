"""Live TensorBoard scalars of a run (`--tensorboard_dir`), with TensorFlow's summary writer.

As they happen: `train/loss` at every step, and for every measurement its scalar fields
(`hessian/lambda_1` … `hessian/lambda_k`, `hessian/residual_max`, `edges/two_over_eta`,
`edges/sam_edge`, `edges/edge`, `hessian/grad_norm`, `hessian/loss`, `hessian/g_alignment`,
`hessian/sg_alignment`, `hessian/step_size`, `hessian/hvps`, `hessian/seconds`, and the
curvature kinds' own (`curvature.registry.scalars`: `curvature/trace`, `per_layer/<block>`,
...)), and for every evaluation `test/<metric>` (with --ema_decay also `ema_test/<metric>`, the
averaged weights'), each at its training step. The writer flushes every few seconds, so
`tensorboard --logdir DIR` follows a run live.
TensorFlow is imported only when a writer is made.
"""

import math
import os
from typing import Any, Mapping

from sam_edge.curvature import registry

FLUSH_MILLIS = 5000
RECORD_SCALARS = {  # record key: tag
    "grad_norm": "hessian/grad_norm", "loss": "hessian/loss",
    "g_alignment": "hessian/g_alignment", "sg_alignment": "hessian/sg_alignment",
    "step_size": "hessian/step_size", "hvps": "hessian/hvps", "seconds": "hessian/seconds",
    "two_over_eta": "edges/two_over_eta", "sam_edge": "edges/sam_edge", "edge": "edges/edge",
}


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
  """The finite scalars of a measurement or evaluation record, by tag."""
  out = {f"hessian/lambda_{i + 1}": v for i, v in enumerate(record.get("eigenvalues") or ())}
  if record.get("residuals"):
    out["hessian/residual_max"] = max(record["residuals"])
  if "eigenvalues" in record:
    out.update({tag: record[key] for key, tag in RECORD_SCALARS.items() if key in record})
    out.update(registry.scalars(record))
  else:                                                # an evaluation
    out.update({f"{prefix[:-1]}/{key[len(prefix):]}": value for key, value in record.items()
                for prefix in ("test_", "ema_test_") if key.startswith(prefix)})
  return {tag: float(v) for tag, v in out.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Writer:
  """Scalars to a TensorBoard event file in `folder` (created with its parents)."""

  def __init__(self, folder: str):
    import tensorflow as tf  # only here: it is slow to import
    os.makedirs(folder, exist_ok=True)
    self._tf = tf
    self._writer = tf.summary.create_file_writer(folder, flush_millis=FLUSH_MILLIS)

  def write(self, step: int, values: Mapping[str, float]) -> None:
    with self._writer.as_default(step=int(step)):
      for tag, value in values.items():
        self._tf.summary.scalar(tag, value)

  def step(self, step: int, values: Mapping[str, float]) -> None:
    """A training step's scalars as `train/<name>` (the loss, λ1 per step, ...), finite ones."""
    self.write(step, {f"train/{name}": value for name, value in values.items()
                      if math.isfinite(value)})

  def record(self, record: Mapping[str, Any]) -> None:
    self.write(record["step"], scalars(record))

  def close(self) -> None:
    self._writer.flush()
    self._writer.close()
