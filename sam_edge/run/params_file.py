"""A run's final parameters and BatchNorm statistics (`--params_output`), checksummed, so that a
later command can rebuild the network from the run's config and use them.

The file is a numpy `.npz` (read with `allow_pickle=False`: loading it runs no code) holding the
arrays `a0, a1, ...` and one more entry `meta`, the UTF-8 bytes (uint8) of the JSON

    {"format": "sam_edge.params/1", "task": "image_classification", "step": 400,
     "config": {flag: value, ...},                     # the run's config, as in its raw pickle
     "tree": {"params": {...: "a0", ...}, "model_state": {...}[,
              "ema": {"params": {...}, "model_state": {...}}][, "best": {...}]},
     "arrays": {"a0": {"sha256": ..., "dtype": "float32", "shape": [784, 8]}, ...},
     "sha256": records.json_sha256(every other key of meta)}

`tree` is the nested dicts/lists of the parameters and the model state (`{}` when the network
has no BatchNorm), each array replaced by its entry's name; a run with --ema_decay adds "ema",
the moving average of both (`optim.ema`), and a run that keeps its best evaluation's weights
(--early_stopping_patience, --restore_best) adds "best", each {"params", "model_state"}, read back
as `Saved.ema` and `Saved.best` (None for a file without one, every file written before they
existed included). An array's sha256 is that of its bytes in C order (`array_sha256`, which
`checksums.array_digests` shares). `read` refuses, in one `ParamsError` line, a file that is not
such an npz, a meta that does not match its checksum, and an array that is missing or does not
match its dtype, shape or checksum; `read_header` reads and checks the meta alone. This module
imports no jax.
"""

import contextlib
import hashlib
import io
import json
import zipfile
from typing import Any, Iterator, NamedTuple

import numpy as np

from sam_edge import errors, records
from sam_edge.pytree import PyTree

FORMAT = "sam_edge.params/1"
META = "meta"


class ParamsError(errors.InputError):
  """A parameters file that cannot be read or does not match its checksums."""


class Saved(NamedTuple):
  """What a parameters file holds."""
  task: str           # the entry point: "image_classification" or "transformer"
  step: int           # the training steps done
  config: dict        # the run's flag values
  params: PyTree      # nested dicts of numpy arrays
  model_state: PyTree  # {"batch_stats": ...} for BatchNorm networks, else {}
  ema: Any = None      # {"params", "model_state"} of the weights' moving average, or None
  best: Any = None     # {"params", "model_state"} of the best evaluation, or None


VARIANTS = ("ema", "best")     # the optional {"params", "model_state"} trees (module doc)


def _skeleton(tree: PyTree, arrays: dict[str, np.ndarray]) -> Any:
  """`tree` with each array replaced by a new name `aN` (appended to `arrays`)."""
  if isinstance(tree, dict):
    return {str(k): _skeleton(v, arrays) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_skeleton(v, arrays) for v in tree]
  if tree is None:
    return None
  name = f"a{len(arrays)}"
  arrays[name] = np.ascontiguousarray(np.asarray(tree))
  return name


def _fill(skeleton: Any, arrays: dict[str, np.ndarray]) -> PyTree:
  if isinstance(skeleton, dict):
    return {k: _fill(v, arrays) for k, v in skeleton.items()}
  if isinstance(skeleton, list):
    return [_fill(v, arrays) for v in skeleton]
  return None if skeleton is None else arrays[skeleton]


def array_sha256(x: np.ndarray) -> str:
  """The sha256 (hex) of an array's bytes in C order."""
  return hashlib.sha256(np.ascontiguousarray(x).reshape(-1).view(np.uint8)).hexdigest()


def write(path: str, task: str, step: int, config: dict, params: PyTree,
          model_state: PyTree, **variants: Any) -> None:
  """Writes the file (module doc) atomically (the old file or the new one survives a kill);
  `variants` the optional trees of VARIANTS ({"params", "model_state"} or None). The arrays are
  host arrays (numpy, or jax arrays this process can read whole)."""
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    raise TypeError(f"unknown weight variants {sorted(unknown)}")
  arrays: dict[str, np.ndarray] = {}
  skeleton = lambda weights: {"params": _skeleton(weights["params"], arrays),
                              "model_state": _skeleton(weights.get("model_state") or {}, arrays)}
  tree = skeleton({"params": params, "model_state": model_state})
  tree.update({name: skeleton(variants[name]) for name in VARIANTS
               if variants.get(name) is not None})
  meta = {"format": FORMAT, "task": task, "step": int(step), "config": records.to_plain(config),
          "tree": tree,
          "arrays": {n: {"sha256": array_sha256(a), "dtype": a.dtype.str,
                         "shape": list(a.shape)} for n, a in arrays.items()}}
  meta["sha256"] = records.json_sha256(meta)
  buffer = io.BytesIO()
  text = json.dumps(meta, allow_nan=True).encode("utf-8")
  np.savez(buffer, **arrays, **{META: np.frombuffer(text, np.uint8)})
  records.atomic_write_bytes(path, buffer.getvalue())


def _meta(npz: Any, path: str) -> dict:
  if META not in npz.files:
    raise ParamsError(f"{path}: holds no '{META}' entry: not a parameters file")
  try:
    meta = json.loads(npz[META].tobytes().decode("utf-8"))
  except (ValueError, TypeError) as e:
    raise ParamsError(f"{path}: its meta is not JSON ({e})") from None
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise ParamsError(f"{path}: not a parameters file of format {FORMAT}")
  body = {k: v for k, v in meta.items() if k != "sha256"}
  if records.json_sha256(body) != meta.get("sha256"):
    raise ParamsError(f"{path}: its meta (config, tree, checksums) does not match its sha256 "
                      "checksum")
  return meta


def _array(npz: Any, name: str, expected: dict, path: str) -> np.ndarray:
  if name not in npz.files:
    raise ParamsError(f"{path}: array {name} is missing")
  x = npz[name]
  if x.dtype.str != expected["dtype"] or list(x.shape) != expected["shape"]:
    raise ParamsError(f"{path}: array {name} is {x.dtype.str}{list(x.shape)}, not "
                      f"{expected['dtype']}{expected['shape']}")
  if array_sha256(x) != expected["sha256"]:
    raise ParamsError(f"{path}: array {name} does not match its sha256 checksum")
  return x


@contextlib.contextmanager
def _reading(path: str) -> Iterator[tuple[Any, dict]]:
  """(npz, checked meta) of the file at `path`; a damaged or missing file as one ParamsError."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      yield npz, _meta(npz, path)
  except ParamsError:
    raise
  except OSError as e:
    raise ParamsError(f"{path}: cannot be read ({e.strerror or e})") from None
  except (zipfile.BadZipFile, ValueError, EOFError, KeyError, TypeError, AttributeError) as e:
    raise ParamsError(f"{path}: not a readable parameters file ({type(e).__name__}: "
                      f"{' '.join(str(e).split())[:200]})") from None


def read(path: str) -> Saved:
  """The file at `path`, verified against its checksums; ParamsError (one line) otherwise."""
  with _reading(path) as (npz, meta):
    arrays = {n: _array(npz, n, e, path) for n, e in meta["arrays"].items()}
    tree = meta["tree"]
    return Saved(task=meta["task"], step=meta["step"], config=meta["config"],
                 params=_fill(tree["params"], arrays),
                 model_state=_fill(tree["model_state"], arrays),
                 **{name: _fill(tree[name], arrays) for name in VARIANTS if name in tree})


def read_header(path: str) -> Saved:
  """The task, step and config of the file at `path` without its arrays (`params` and
  `model_state` None): only the meta is read, and checked against its own sha256, so this is
  cheap for any network. ParamsError (one line) otherwise; `read` checks the arrays."""
  with _reading(path) as (_, meta):
    return Saved(task=meta["task"], step=meta["step"], config=meta["config"], params=None,
                 model_state=None)
