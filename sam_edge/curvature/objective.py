"""The loss a measurement differentiates, split into the network and the loss of its outputs.

On a batch (x, y) the measured training loss is L(w) = ℓ(f(w, x), y): `forward(w, batch)` gives
the outputs f (float32, BatchNorm with the measured batch's own statistics) and
`output_loss(outputs, batch)` the mean loss ℓ of them. The Hessian kinds take ∇²L; the
Gauss–Newton kind takes Jᵀ H_ℓ J from the two parts. With `chunk` = C the batch is taken C
examples at a time (`--measure_chunk`: consecutive chunks; `--accumulate_batches`: the training
step's interleaved micro-batches, `interleave`): L is the mean over the N/C chunks of their
losses, and so is every operator built from it, so the memory is that of one chunk.

With the weight decay in the loss (--weight_decay_in_loss, `optim.regularization`) the measured
loss is the one the optimizer follows, L(w) + R(w) with R(w) = (λ/2)‖M⊙w‖² (`penalty`): its
Hessian, and every operator of the curvature kinds, gains λ diag(M) (λ I without a mask), and
each example's loss gains R(w).
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from sam_edge.data import batching
from sam_edge.models import losses
from sam_edge.pytree import PyTree

# A task's network and the loss of its outputs, as `run.problem.Problem` holds them (its module
# doc); a measurement calls the forward pass in float32 (`curvature.measure.objective`).
Forward = Callable[[PyTree, PyTree, PyTree, PyTree, Any], tuple[Any, PyTree]]
# (params, model_state, batch, constants, dtype) -> (float32 outputs, new model_state)
OutputLoss = Callable[[Any, PyTree], jax.Array]     # (outputs, batch) -> mean loss ℓ


@dataclasses.dataclass(frozen=True)
class Objective:
  """L(w) = ℓ(f(w, x), y), optionally over chunks (module doc)."""
  forward: Callable[[PyTree, PyTree], Any]            # (params, batch) -> outputs
  output_loss: OutputLoss
  chunk: Optional[int] = None
  interleave: bool = False                            # chunks as `batching.split` interleaves
  penalty: Optional[Callable[[PyTree], jax.Array]] = None   # R(w), in the loss; None: none

  def one_batch_loss(self, params: PyTree, batch: PyTree) -> jax.Array:
    """ℓ(f(w, x), y) on `batch` taken whole."""
    return self.output_loss(self.forward(params, batch), batch)

  def example_losses(self, params: PyTree, batch: PyTree) -> jax.Array:
    """[B]: each example's loss at `params` (plus R(w)), from one forward pass on the whole batch
    (unchunked; `losses.per_example`)."""
    return self.penalized(losses.per_example(self.output_loss, self.forward(params, batch),
                                             batch), params)

  def penalized(self, value: jax.Array, params: PyTree) -> jax.Array:
    """value + R(w); value itself without a penalty."""
    return value if self.penalty is None else value + self.penalty(params)

  def loss(self, params: PyTree, batch: PyTree) -> jax.Array:
    """L(w) (+ R(w)): the loss of the whole batch, or the mean of its chunks' losses."""
    if self.chunk:
      value = batching.chunked_loss(self.one_batch_loss, self.chunk,
                                    interleave=self.interleave)(params, batch)
    else:
      value = self.one_batch_loss(params, batch)
    return self.penalized(value, params)

  def chunk_mean(self, fn: Callable[[PyTree], PyTree], batch: PyTree) -> PyTree:
    """fn(batch), or the mean of fn over the batch's chunks (each rematerialised, one at a time),
    for quantities that are means over chunks like L itself (e.g. a Gauss–Newton product)."""
    if not self.chunk:
      return fn(batch)
    chunks = batching.split(batch, self.chunk, interleave=self.interleave)
    per_chunk = jax.lax.map(jax.checkpoint(fn), chunks)
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), per_chunk)
