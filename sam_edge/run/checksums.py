"""The checksums a checkpoint step keeps in its meta, and the check of a step read back.

At save, the meta JSON of a step (`{"progress": ..., "config": ...}`, see checkpoints.py) gains

    "sha256": {"arrays": {leaf: sha256 of the leaf's bytes, ...},
               "meta":   records.json_sha256({"progress": ..., "config": ...})}

* `leaf` names an array of `{"state": TrainState, "v_prev": warm starts}` by its path, every key
  written `[...]`: `['state']['params']['mlp/~/linear_0']['w']`, `['state']['opt_state'][0]
  ['trace'][...]`. Namedtuple fields and dict keys are written alike, so a tree restored without
  templates (orbax gives dicts) names its leaves as the saved one did.
* A leaf's bytes are the array on the host in C order (`np.ascontiguousarray(x)`, viewed as
  uint8): independent of orbax's file format, compared after the step is restored. Its dtype and
  shape are orbax's own metadata; a leaf restored with another dtype or shape has other bytes.
* The meta checksum covers the progress (records, losses, clocks) and the config as written,
  in `records.json_sha256`'s canonical JSON, so a changed digit in the meta file is found too.

A step without the "sha256" entry was written before checksums existed: it is accepted with a
note (researchers resume old runs). A meta with any other set of keys is unsound, so that a
flipped bit in the key "sha256" cannot make a step look old.
"""

import concurrent.futures
import os
from typing import Any, Optional

import jax
from jax.tree_util import FlattenedIndexKey, SequenceKey

from sam_edge import records
from sam_edge.pytree import PyTree
from sam_edge.run import devices, params_file

KEY = "sha256"
BODY = ("config", "progress")          # the meta's own content, besides the checksums
HASH_THREADS = 4
THREAD_BYTES = 1 << 20      # leaves this large are hashed on threads of their own
OLD_NOTE = ("holds no checksums (written before checksums existed): its arrays cannot be "
            "verified")


def key_text(key: Any) -> str:
  """One step of a jax key path as text: a dict key, a sequence index or an attribute name."""
  for field in ("key", "idx", "name"):          # DictKey, SequenceKey, GetAttrKey
    if hasattr(key, field):
      return str(getattr(key, field))
  return str(key)


def leaf_name(path: tuple) -> str:
  """`['state']['params']['dense']['w']`: a leaf's path, container types left out (indices bare,
  keys and attribute names quoted alike)."""
  return "".join(f"[{key_text(k)}]" if isinstance(k, (SequenceKey, FlattenedIndexKey))
                 else f"[{key_text(k)!r}]" for k in path)


def _digest(x: Any) -> str:
  """The sha256 of the leaf's C-order bytes on the host."""
  return params_file.array_sha256(devices.host_copy(x))


def array_digests(tree: PyTree) -> dict[str, str]:
  """{leaf name: sha256 (hex) of the leaf's bytes} for every array of `tree`. Leaves of at least
  THREAD_BYTES are hashed on up to HASH_THREADS threads (hashlib lets go of the GIL on large
  buffers) while the small ones are hashed here, where a thread would cost more than the hash."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  with concurrent.futures.ThreadPoolExecutor(min(HASH_THREADS, os.cpu_count() or 1)) as pool:
    threaded = [pool.submit(_digest, x) if getattr(x, "nbytes", 0) >= THREAD_BYTES else None
                for _, x in leaves]
    here = [_digest(x) if done is None else None for (_, x), done in zip(leaves, threaded)]
  return {leaf_name(path): digest or done.result()
          for (path, _), digest, done in zip(leaves, here, threaded)}


def make(arrays: PyTree, body: dict) -> dict:
  """The "sha256" entry of a step's meta for its arrays and its meta `body` (config, progress)."""
  return {"arrays": array_digests(arrays), "meta": records.json_sha256(body)}


class DeferredMeta(dict):
  """A step's meta whose "sha256" entry (`make`) is computed on another thread while Orbax writes
  the arrays, so that the hashing overlaps the writing instead of adding to it.

  The dict holds `body`; `items()`, which `json.dumps` calls to encode a dict subclass (Orbax
  encodes the meta in its commit thread, beside the array writes), waits for the checksums and
  adds them. `join()` waits too: `Checkpointer.save` calls it before it returns, so no array is
  hashed after its save (the next training step may donate its buffers).
  """

  def __init__(self, arrays: PyTree, body: dict):
    super().__init__(body)
    self._pool = concurrent.futures.ThreadPoolExecutor(1)
    self._future = self._pool.submit(make, arrays, body)

  def join(self) -> dict:
    """The "sha256" entry, once computed (its exception, if the hashing failed)."""
    try:
      return self._future.result()
    finally:
      self._pool.shutdown(wait=False)

  def items(self):
    return [*super().items(), (KEY, self.join())]


def problem(meta: dict, arrays: PyTree) -> tuple[Optional[str], Optional[str]]:
  """(what is wrong, None) if the restored step (`meta`, `arrays`) does not match its checksums;
  (None, a note) for a step without checksums; (None, None) if it matches."""
  keys = set(meta)
  if keys == set(BODY):
    return None, OLD_NOTE
  if keys != {*BODY, KEY}:
    return f"its meta file holds the keys {sorted(keys)}, not {sorted({*BODY, KEY})}", None
  sums = meta[KEY]
  if not (isinstance(sums, dict) and isinstance(sums.get("arrays"), dict)
          and isinstance(sums.get("meta"), str)):
    return "its checksums are malformed", None
  if records.json_sha256({k: meta[k] for k in BODY}) != sums["meta"]:
    return "its meta file (progress and config) does not match its sha256 checksum", None
  digests, saved = array_digests(arrays), sums["arrays"]
  wrong = []
  for name in sorted(set(digests) | set(saved)):
    if name not in digests:
      wrong.append(f"array {name} is missing")
    elif name not in saved:
      wrong.append(f"array {name} has no checksum")
    elif digests[name] != saved[name]:
      wrong.append(f"array {name} does not match its sha256 checksum")
  more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
  return (wrong[0] + more if wrong else None), None
