"""The decoded splits of a prepared TFDS image dataset, kept beside TFDS's own files, so that
later runs read them as NumPy arrays without TensorFlow.

Reading MNIST's 70,000 PNG-encoded examples through `tf.data` takes seconds, and importing
TensorFlow for it seconds more, at every start of a run. The first run that reads a prepared
dataset (through TFDS, `images.load_image_dataset`) writes what it read into

    <data_dir>/<name>/<version>/sam_edge_arrays/{train,test}_{image,label}.npy, meta.json

and later runs load those files. `meta.json` is written last and holds, per split, the number of
examples and `split_sha256` (sha256 of the image bytes then the label bytes), and the sha256 of
TFDS's `dataset_info.json` beside it; a copy whose arrays do not match it, or made from another
preparation, is ignored (and rewritten by the next read through TFDS). The folder lives inside
TFDS's version folder, so deleting or re-preparing the dataset removes it too. It is a cache: a
data dir that cannot be written is read through TFDS every time, as before. Its files get the
permissions the user's umask gives, as TFDS's do. No TensorFlow or TFDS import here;
`<data_dir>` defaults to TFDS's ($TFDS_DATA_DIR, else ~/tensorflow_datasets).
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
  """TFDS's data dir, by TFDS 4.9.10's rule: `data_dir` when given (even ''), else
  $TFDS_DATA_DIR when set, else ~/tensorflow_datasets."""
  if data_dir is None:
    data_dir = os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))
  return os.path.expanduser(data_dir)


def folder(name: str, data_dir: Optional[str]) -> str:
  """<data_dir>/<name>/<version>/sam_edge_arrays (the version TFDS 4.9.10 builds)."""
  return os.path.join(tfds_root(data_dir), name, SPECS[name].version, FOLDER)


def split_sha256(split: dict[str, np.ndarray]) -> str:
  """``sha256(image bytes || label bytes)`` in hex (uint8 / int32 <, C order)."""
  digest = hashlib.sha256()
  digest.update(memoryview(np.ascontiguousarray(split["image"], np.uint8)).cast("B"))
  digest.update(memoryview(np.ascontiguousarray(split["label"], "<i4")).cast("B"))
  return digest.hexdigest()


def info_sha256(name: str, data_dir: Optional[str]) -> Optional[str]:
  """sha256 of TFDS's dataset_info.json of the prepared dataset (None if it has none): ties a
  copy to the preparation it was read from."""
  path = os.path.join(os.path.dirname(folder(name, data_dir)), "dataset_info.json")
  try:
    with open(path, "rb") as f:
      return hashlib.sha256(f.read()).hexdigest()
  except OSError:
    return None


def read(name: str, data_dir: Optional[str]) -> Optional[tuple[dict, int]]:
  """({split: {"image", "label"}}, num_classes) from the folder, or None when it is missing,
  incomplete or does not match its meta.json."""
  where = folder(name, data_dir)
  try:
    with open(os.path.join(where, META), encoding="utf-8") as f:
      meta = json.load(f)
    if meta["dataset_info_sha256"] != info_sha256(name, data_dir):
      return None                                   # TFDS's files were prepared again
    whole = {split: {key: np.load(os.path.join(where, f"{split}_{key}.npy"))
                     for key in KEYS} for split in SPLITS}
    for split in SPLITS:
      arrays, expected = whole[split], meta["splits"][split]
      if (any(arrays[k].dtype != t for k, t in KEYS.items())
          or len(arrays["label"]) != expected["examples"]
          or arrays["image"].shape[1:] != SPECS[name].image_shape
          or split_sha256(arrays) != expected["sha256"]):
        return None
    return whole, int(meta["num_classes"])
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return None                                     # missing, half-written or not ours


def write(name: str, data_dir: Optional[str], whole: dict, num_classes: int) -> bool:
  """Writes the splits read through TFDS into the folder (whole, or not at all: a temporary
  folder renamed into place), unless a sound copy is there already (another process's);
  False when the data dir cannot be written."""
  where = folder(name, data_dir)
  parent = os.path.dirname(where)
  if read(name, data_dir) is not None:
    return True
  meta = {"dataset": name, "version": SPECS[name].version, "num_classes": num_classes,
          "dataset_info_sha256": info_sha256(name, data_dir),
          "splits": {split: {"examples": len(whole[split]["label"]),
                             "sha256": split_sha256(whole[split])} for split in SPLITS}}
  tmp = None
  try:
    shutil.rmtree(where, ignore_errors=True)         # a stale or damaged copy
    tmp = tempfile.mkdtemp(prefix=f".{FOLDER}-", dir=parent)
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)                    # mkdtemp's 0700 would keep others out
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
