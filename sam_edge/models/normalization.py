"""Which parameters belong to normalisation layers (SAM-ON perturbs only these).

A parameter is a normalisation parameter when its leaf name is a scale or an offset (`scale`,
`bias`, `offset`) and the module holding it is a normalisation layer by name: the last part of
its module path (flax: the dict key above the leaf; haiku: the last `/`-separated part of it)
matches NORM_MODULE, i.e. flax's `LayerNorm_0`, `BatchNorm_3`, `GroupNorm_1`, haiku's
`layer_norm`, `layer_norm_2`, `rms_norm`, and our residual networks' `bn1`, `bn2`, `bn3`,
`stem_bn`, `final_bn`, `projection_bn` (`resnet.batch_norm`). So the CNN's LayerNorms, the
residual networks' BatchNorms and the transformer's LayerNorms are found, and the MLP has none.
"""

import re
from typing import Any

import jax

from sam_edge.pytree import PyTree

NORM_MODULE = re.compile(r"(?i)^(.*_)?(layer_?norm|batch_?norm|group_?norm|rms_?norm|bn)(_?\d+)?$")
NORM_LEAVES = ("scale", "bias", "offset")


def _name(key: Any) -> str:
  return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))


def is_normalization(path: tuple) -> bool:
  """Whether the parameter at `path` (a `jax.tree_util` key path) is a normalisation layer's
  scale or offset (module doc)."""
  names = [_name(k) for k in path]
  if len(names) < 2 or names[-1] not in NORM_LEAVES:
    return False
  return bool(NORM_MODULE.match(names[-2].split("/")[-1]))


def mask(params: PyTree) -> PyTree:
  """A pytree like `params` of Python bools: True at the normalisation parameters."""
  return jax.tree_util.tree_map_with_path(lambda path, _: is_normalization(path), params)
