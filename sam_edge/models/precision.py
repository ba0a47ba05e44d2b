"""Mixed precision for training (`--compute_dtype`): parameters stay float32 and are cast, with the
inputs, to the compute dtype inside the loss; the logits come back as float32 for the loss. The
gradient flows through the cast, so it is float32 too. Measurements never use this: they are
float32 at matmul precision "highest"."""

from typing import Any

import jax
import jax.numpy as jnp

from sam_edge.pytree import PyTree

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def cast_floats(tree: PyTree, dtype: Any) -> PyTree:
  """Every floating array of `tree` as `dtype` (integers untouched)."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x,
      tree)


def like(tree: PyTree, reference: PyTree) -> PyTree:
  """`tree` with the dtypes of `reference` (e.g. BatchNorm statistics back to float32)."""
  return jax.tree.map(lambda x, r: x.astype(r.dtype), tree, reference)
