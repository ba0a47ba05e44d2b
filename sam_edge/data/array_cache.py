"""The decoded splits of a prepared TFDS image dataset, kept beside TFDS's own files, so that
later runs read them as NumPy arrays without TensorFlow.

Reading MNIST's 70,000 PNG-encoded examples through `tf.data` takes seconds, and importing
TensorFlow for it seconds more, at every start of a run. The first run that reads a prepared
dataset (through TFDS, `images.load_image_dataset`) writes what it read into

    <data_dir>/<name>/<version>/sam_edge_arrays/{train,test}_{image,label}.npy, meta.json

and later runs load those files. `meta.json` is written last and holds, per split, the number of
examples and `split_sha256` (sha256 of the image bytes then the label bytes); a folder whose
arrays do not match it is ignored (and rewritten by the next read through TFDS). The folder lives
inside TFDS's version folder, so deleting or re-preparing the dataset removes it too. It is a
cache: a data dir that cannot be written is read through TFDS every time, as before. No
TensorFlow or TFDS import here; `<data_dir>` defaults to TFDS's ($TFDS_DATA_DIR, else
~/tensorflow_datasets).
"""

import hashlib
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np

from sam_edge.data.image_specs import SPECS

FOLDER = "sam_edge_arrays"
META = "meta.json"
SPLITS = ("train", "test")
KEYS = {"image": np.uint8, "label": np.int32}


def tfds_root(data_dir: Optional[str]) -> str:
  """TFDS's data dir: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR")
                            or os.path.join("~", "tensorflow_datasets"))


def folder(name: str, data_dir: Optional[str]) -> str:
  """<data_dir>/<name>/<version>/sam_edge_arrays (the version TFDS 4.9.10 builds)."""
  return os.path.join(tfds_root(data_dir), name, SPECS[name].version, FOLDER)


def split_sha256(split: dict[str, np.ndarray]) -> str:
  """``sha256(image bytes || label bytes)`` in hex (uint8 / int32 <, C order)."""
  digest = hashlib.sha256()
  digest.update(np.ascontiguousarray(split["image"], np.uint8).tobytes())
  digest.update(np.ascontiguousarray(split["label"], "<i4").tobytes())
  return digest.hexdigest()


def read(name: str, data_dir: Optional[str]) -> Optional[tuple[dict, int]]:
  """({split: {"image", "label"}}, num_classes) from the folder, or None when it is missing,
  incomplete or does not match its meta.json."""
  where = folder(name, data_dir)
  try:
    with open(os.path.join(where, META), encoding="utf-8") as f:
      meta = json.load(f)
    whole = {split: {key: np.load(os.path.join(where, f"{split}_{key}.npy"))
                     for key in KEYS} for split in SPLITS}
  except (OSError, ValueError):
    return None
  for split in SPLITS:
    arrays, expected = whole[split], meta.get("splits", {}).get(split, {})
    if (any(arrays[k].dtype != t for k, t in KEYS.items())
        or len(arrays["label"]) != expected.get("examples")
        or arrays["image"].shape[1:] != SPECS[name].image_shape
        or split_sha256(arrays) != expected.get("sha256")):
      return None
  return whole, int(meta["num_classes"])


def write(name: str, data_dir: Optional[str], whole: dict, num_classes: int) -> bool:
  """Writes the splits read through TFDS into the folder (whole, or not at all: a temporary
  folder renamed into place); False when the data dir cannot be written."""
  where = folder(name, data_dir)
  parent = os.path.dirname(where)
  meta = {"dataset": name, "version": SPECS[name].version, "num_classes": num_classes,
          "splits": {split: {"examples": len(whole[split]["label"]),
                             "sha256": split_sha256(whole[split])} for split in SPLITS}}
  tmp = None
  try:
    shutil.rmtree(where, ignore_errors=True)         # a stale or damaged copy
    tmp = tempfile.mkdtemp(prefix=f".{FOLDER}-", dir=parent)
    for split in SPLITS:
      for key, dtype in KEYS.items():
        np.save(os.path.join(tmp, f"{split}_{key}.npy"), np.asarray(whole[split][key], dtype))
    with open(os.path.join(tmp, META), "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=1)
    os.rename(tmp, where)
    return True
  except OSError:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)
    return False
