"""Random-access sources of {"image", "label"} records for the stream (`stream`).

* TFDS (`tfds_split`): `builder.as_data_source(split)` over the ArrayRecord files of a dataset
  prepared with `file_format='array_record'` (prepared here that way when it is not prepared
  yet); its records are decoded by TFDS's feature specs (the image as uint8 pixels).
* Users' own files (`ImageRecords`): ArrayRecord files whose records are an 8-byte little-endian
  int64 label followed by the encoded image (JPEG or PNG), as `write_image_records` writes them.

`decoded_bytes` is the size a split takes decoded into memory, N·H·W·C bytes, from TFDS's
dataset info: what `--data_pipeline=auto` compares with the memory cap.
"""

import dataclasses
import math
import os
from typing import Any, Callable, Optional, Sequence

from sam_edge import errors

LABEL_BYTES = 8


@dataclasses.dataclass(frozen=True)
class ImageRecords:
  """The records of ArrayRecord files (module doc) as {"image": encoded bytes, "label": int}."""
  paths: tuple[str, ...]

  def _source(self) -> Any:
    import grain  # pylint: disable=import-outside-toplevel
    cached = self.__dict__.get("_opened")
    if cached is None:                 # opened lazily: each worker process opens its own
      cached = grain.sources.ArrayRecordDataSource(list(self.paths))
      object.__setattr__(self, "_opened", cached)
    return cached

  def __len__(self) -> int:
    return len(self._source())

  def __getitem__(self, index: int) -> dict:
    raw = self._source()[int(index)]
    return {"label": int.from_bytes(raw[:LABEL_BYTES], "little", signed=True),
            "image": raw[LABEL_BYTES:]}

  def __getstate__(self) -> dict:
    return {"paths": self.paths}

  def __setstate__(self, state: dict) -> None:
    object.__setattr__(self, "paths", state["paths"])


def write_image_records(path: str, images: Sequence[bytes], labels: Sequence[int]) -> None:
  """Writes one ArrayRecord file of the encoded `images` and their `labels` (module doc)."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  writer = array_record_module.ArrayRecordWriter(os.fspath(path), "group_size:1")
  try:
    for image, label in zip(images, labels, strict=True):
      writer.write(int(label).to_bytes(LABEL_BYTES, "little", signed=True) + bytes(image))
  finally:
    writer.close()


def decoded_bytes(num_examples: int, image_shape: Sequence[Optional[int]]) -> float:
  """N·H·W·C, the bytes of N uint8 images of `image_shape`; ∞ when a side is unknown (images of
  varying size, e.g. ImageNet's, cannot be held as one array)."""
  if any(d is None for d in image_shape):
    return math.inf
  return float(num_examples) * math.prod(int(d) for d in image_shape)


def _builder(name: str, data_dir: Optional[str]) -> Any:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  tfds.disable_progress_bar()
  try:
    return tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise errors.InputError(f"--dataset={name}: TFDS has no dataset of that name") from None
  except ValueError as e:             # prepared there in another format (TFRecord)
    raise errors.InputError(_not_streamable(name, data_dir, e)) from None


def tfds_info(name: str, data_dir: Optional[str]) -> tuple[int, tuple, int]:
  """(training examples, image shape with None for varying sides, classes) from TFDS's dataset
  info (no data read)."""
  info = _builder(name, data_dir).info
  return (info.splits["train"].num_examples, tuple(info.features["image"].shape),
          info.features["label"].num_classes)


def tfds_split(name: str, data_dir: Optional[str], split: str,
               prepare: Callable[[Any], None]) -> Any:
  """TFDS's random-access source of `split` (module doc); `prepare(builder)` prepares the dataset
  first when it is not prepared. A dataset prepared in another file format is one InputError
  line."""
  builder = _builder(name, data_dir)
  if not builder.is_prepared():
    prepare(builder)
  try:
    return builder.as_data_source(split)
  except (NotImplementedError, ValueError) as e:
    raise errors.InputError(_not_streamable(name, builder.data_dir, e)) from None


def _not_streamable(name: str, folder: Optional[str], e: Exception) -> str:
  """The line for a dataset TFDS holds in a format the stream cannot read."""
  return (f"{name} in {folder or 'the default TFDS folder'} cannot be streamed "
          f"({' '.join(str(e).split())[:200]}): the stream reads TFDS's ArrayRecord files; "
          "prepare it in another --tfds_data_dir (it is prepared there with "
          "file_format=array_record)")

