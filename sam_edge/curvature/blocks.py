"""Per-layer sharpness: the top eigenvalue and the trace of each diagonal Hessian block H_bb.

Blocks partition the raveled parameters: one per leaf ("leaf": `Dense_0/kernel`) or one per
module, the leaves sharing a parent ("module": `Dense_0` = its kernel and bias). A module's leaves
are siblings in the pytree, hence contiguous in `ravel_pytree` order, so block b is a range
[start_b, end_b) and H_bb = H[start_b:end_b, start_b:end_b]. A leading "params" collection (flax)
is left out of the names.

Top eigenvalue. With the block mask M_b = diag(1[start_b ≤ i < end_b]) and a start vector u in
the block, Lanczos (`lanczos.lanczos`, k = 1) runs on the n-dimensional operator

    A_b v = M_b H M_b v + c_b (I − M_b) v,      c_b = uᵀ H u / uᵀu   (one HVP),

which acts as H_bb on the block and as c_b·I outside it. A Krylov space started in the block
stays in it; only a restart after breakdown (block exhausted) reaches outside, where every
eigenvalue is c_b ∈ [λ_min(H_bb), λ_max(H_bb)], so the top eigenvalue of A_b is λ_max(H_bb).
All blocks share one operator shape, so one compiled Lanczos serves every block (`lax.map`
over the blocks); each step is one full HVP.

Trace. One set of K Rademacher probes z serves every block: E[z_bᵀ (Hz)_b] = tr(H_bb), since
E[z zᵀ] = I, and the block samples z_bᵀ(Hz)_b sum to the Hutchinson sample zᵀHz. Per block,
t̂_b = mean of the K samples and SE_b = their sample std / sqrt(K): K HVPs for all blocks
together, instead of K per block for probes restricted to the block. The off-block coupling
adds 2 Σ_{i∈b, j∉b} H_ij² to each sample's variance 2 Σ_{i≠j∈b} H_ij²: on the benchmark MLP
that makes it 2.3–5.1 times larger per module, less than the 4 blocks' factor in HVPs
(benchmarks/curvature.py); tiny leaf blocks (biases) fare worse (up to ~100 times).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sam_edge.curvature import lanczos, operators
from sam_edge.pytree import PyTree

GRANULARITIES = ("module", "leaf")


class Blocks(NamedTuple):
  """A partition of the raveled parameters into named contiguous ranges (static)."""
  names: tuple[str, ...]
  bounds: tuple[tuple[int, int], ...]     # [start, end) of each block


def _leaf_names(params: PyTree) -> list[tuple[str, ...]]:
  """Each leaf's key path as strings, in flattening order, without a flax "params" root."""
  paths = [tuple(jax.tree_util.keystr((k,), simple=True) for k in path)
           for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  if isinstance(params, dict) and list(params) == ["params"]:
    paths = [path[1:] for path in paths]
  return paths


def block_partition(params: PyTree, granularity: str = "module") -> Blocks:
  """The blocks of `params` (module doc), in `ravel_pytree` order; needs only shapes."""
  if granularity not in GRANULARITIES:
    raise ValueError(f"unknown block granularity {granularity!r}: expected one of {GRANULARITIES}")
  sizes = [int(jnp.size(leaf)) for leaf in jax.tree_util.tree_leaves(params)]
  names, bounds, start = [], [], 0
  for path, size in zip(_leaf_names(params), sizes):
    group = path if granularity == "leaf" or len(path) <= 1 else path[:-1]
    name = "/".join(group) or "params"
    if names and names[-1] == name and granularity == "module":
      bounds[-1] = (bounds[-1][0], start + size)
    else:
      if name in names:
        raise ValueError(f"block {name!r} is not contiguous in the raveled parameters")
      names.append(name)
      bounds.append((start, start + size))
    start += size
  return Blocks(tuple(names), tuple(bounds))


def block_top_eigenvalues(matvec: operators.MatVec, n: int, dtype: Any, key: jax.Array,
                          partition: Blocks, *, max_steps: int, tol: float,
                          min_steps: int = 1) -> dict[str, jax.Array]:
  """λ_max(H_bb) of each block (module doc): {"eigenvalue", "residual", "hvps"}, each [B]."""
  bounds = jnp.asarray(partition.bounds, jnp.int32)                     # [B, 2]
  keys = jax.random.split(key, len(partition.names))
  index = jnp.arange(n)

  def one(args):
    (start, end), k = args
    mask = ((index >= start) & (index < end)).astype(dtype)
    start_key, lanczos_key = jax.random.split(k)
    u = mask * jax.random.normal(start_key, (n,), dtype)
    u = u / jnp.linalg.norm(u)
    c = jnp.vdot(u, matvec(u))                                          # uᵀHu ∈ spectrum range

    def op(v):
      return mask * matvec(mask * v) + c * (1 - mask) * v
    result = lanczos.lanczos(op, u, lanczos_key, k=1, max_steps=max_steps, tol=tol,
                             min_steps=min_steps)
    return result.eigenvalues[0], result.residuals[0], result.num_matvecs + 1

  eigenvalues, residuals, hvps = jax.lax.map(one, (bounds, keys))
  return {"eigenvalue": eigenvalues, "residual": residuals, "hvps": hvps}


def block_traces(matvec: operators.MatVec, n: int, dtype: Any, key: jax.Array,
                 partition: Blocks, *, num_probes: int, batch_size: int = 1
                 ) -> dict[str, jax.Array]:
  """tr(H_bb) of each block from shared probes (module doc): {"trace", "trace_stderr"}, [B]."""
  if num_probes < 2:
    raise ValueError(f"block traces need at least 2 probes for a standard error, got {num_probes}")
  z = operators.probes(key, num_probes, n, dtype)                       # [K, n]
  products = z * operators.apply_many(matvec, z, batch_size)            # z_i ⊙ H z_i
  samples = jnp.stack([jnp.sum(products[:, s:e], axis=1) for s, e in partition.bounds])  # [B, K]
  traces, stderrs = jax.vmap(operators.sample_mean_and_stderr)(samples)
  return {"trace": traces, "trace_stderr": stderrs}
