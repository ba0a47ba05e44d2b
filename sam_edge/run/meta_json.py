"""A checkpoint's meta as strict JSON: ±inf and NaN written as `{"__float__": "inf" | "-inf" |
"nan"}`, tuples as lists, numpy values as Python numbers, so that the file is standard JSON and
every float reads back exactly; and the loop's progress in that form."""

import dataclasses
import math
from typing import Any

import numpy as np

from sam_edge.run import loop

_FLOAT_TAG = "__float__"


def encode_json(value: Any) -> Any:
  """`value` with non-finite floats tagged, tuples as lists, numpy scalars and arrays as Python
  numbers and (nested) lists: strict JSON that round-trips."""
  if isinstance(value, (np.ndarray, np.generic)):
    value = value.tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return {_FLOAT_TAG: repr(value)}               # 'inf', '-inf' or 'nan'
  if isinstance(value, dict):
    return {key: encode_json(v) for key, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [encode_json(v) for v in value]
  return value


def decode_json(value: Any) -> Any:
  """The inverse of `encode_json` (tuples come back as lists)."""
  if isinstance(value, dict):
    if set(value) == {_FLOAT_TAG}:
      return float(value[_FLOAT_TAG])
    return {key: decode_json(v) for key, v in value.items()}
  if isinstance(value, list):
    return [decode_json(v) for v in value]
  return value


def progress_to_json(progress: loop.Progress) -> dict:
  """`progress` as strict JSON-ready plain data."""
  return encode_json(dataclasses.asdict(progress))


def progress_from_json(data: dict) -> loop.Progress:
  """The `loop.Progress` that `progress_to_json` wrote (unknown fields are dropped)."""
  known = {field.name for field in dataclasses.fields(loop.Progress)}
  return loop.Progress(**{k: v for k, v in decode_json(data).items() if k in known})
