"""The loss and its gradient on one batch, taken whole or as micro-batches (--accumulate_batches).

With `micro_batches` = k the batch (leading axis = examples, B of them) is cut into k interleaved
micro-batches of B/k examples (`batching.split`: micro-batch j holds rows j, j + k, j + 2k, ...,
so that a batch sharded over devices in contiguous blocks gives each device an equal share of
every micro-batch), and

    L(w) = (1/k) Σ_j L_j(w),    ∇L(w) = (1/k) Σ_j ∇L_j(w),    aux = (1/k) Σ_j aux_j,

each a sum over the micro-batches visited by `lax.scan`, so that memory is that of one
micro-batch plus the running sums. For a loss that is a mean over equally weighted examples this
is the loss of the whole batch, to float rounding. With BatchNorm each micro-batch normalises
with its own statistics (L_j is micro-batch j's loss in train mode) and the running statistics,
the aux, move by the micro-batches' mean, s ← 0.9 s + 0.1 (1/k) Σ_j (μ_j, v_j), as m-sharpness
groups do.

Loss convention: `loss_fn(params, batch) -> (loss, aux)`, aux the new model state. The oracle
may also carry the per-example losses `example_losses(params, batch) -> [B]` (ESAM asks for them)
and `first`, (L(w), ∇L(w), aux) at the step's w when the caller has them already (the tracked
training step's linearization, `curvature.tracking`): `first_gradient` hands them over instead of
a pass.
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from sam_edge.data import batching
from sam_edge.pytree import PyTree

LossFn = Callable[[PyTree, PyTree], tuple[jax.Array, PyTree]]   # (params, batch) -> (loss, aux)


def host_loops(program: Optional[Callable] = None, *args: Any) -> bool:
  """Whether loops and branches around gradients run on the host, as jitted pieces it chooses
  between (Lanczos' steps, `curvature.eigensolvers.compiled`; LookSAM's SAM and reuse steps,
  `update.host_phased`), rather than as a `lax.while_loop` or `lax.cond` on the device: on the
  CPU, for a program with convolutions (given `program` and its `args`, its jaxpr is searched for
  one). There XLA runs the kernel-gradient convolutions of an HVP inside a while loop about 30
  times slower than outside one (measured: 6 ResNet-20 HVPs take 2.6 s unrolled, 74 s in a loop),
  and a network's convolution gradients inside a `cond` several times slower. A dense network
  keeps the device loop there, which XLA makes faster by hoisting the loop-invariant forward and
  backward passes out of its HVPs (the MNIST MLP, 20,000 examples: 1.10 s per HVP in the loop,
  1.86 s per step of the host loop); so does every program on other backends."""
  if jax.default_backend() != "cpu":
    return False
  return program is None or _convolves(jax.make_jaxpr(program)(*args).jaxpr)


def _convolves(jaxpr: Any) -> bool:
  """Whether `jaxpr`, or one nested in it (loops, branches, calls), holds a convolution."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      return True
    for value in eqn.params.values():
      for inner in value if isinstance(value, (tuple, list)) else (value,):   # cond's branches
        inner = getattr(inner, "jaxpr", inner)
        if hasattr(inner, "eqns") and _convolves(inner):
          return True
  return False


class Gradients(NamedTuple):
  """What one step computes before the base optimizer. loss, grad and aux are at w whenever the
  oracle has `first`; without it a variant that takes no gradient at w may give them at the
  point where it took its gradient, as its module says (measurements give `first`)."""
  loss: jax.Array      # L(w) on the batch (see below)
  grad: PyTree         # ∇L(w) (see below)
  direction: PyTree    # d, what the base optimizer steps along; the same object as `grad` at ρ = 0
  aux: PyTree          # the new model state, from the unperturbed pass
  sam_state: PyTree    # the SAM variant's next state ({} for the variants without one)
  eps: PyTree = None       # ε, where the step took ∇L(w + ε) on the whole batch (else None)
  perturbed_grad: PyTree = None   # that ∇L(w + ε) (`curvature.tracking` reads it and ε free)


def mean_over(fn: Callable[[PyTree], PyTree], pieces: PyTree) -> PyTree:
  """(1/K) Σ_k fn(piece_k) over the leading axis of `pieces`, visited by `lax.scan` (the running
  sum starts from zeros of fn's output)."""
  first = jax.tree.map(lambda x: x[0], pieces)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))
  total, _ = jax.lax.scan(lambda t, piece: (jax.tree.map(jnp.add, t, fn(piece)), None), zeros,
                          pieces)
  count = jax.tree.leaves(pieces)[0].shape[0]
  return jax.tree.map(lambda x: x / jnp.asarray(count, x.dtype), total)


@dataclasses.dataclass(frozen=True)
class Oracle:
  """L, ∇L and aux of `loss_fn` on `batch`, whole or over `micro_batches` (module doc)."""
  loss_fn: LossFn
  batch: PyTree
  micro_batches: int = 1
  example_losses: Optional[Callable[[PyTree, PyTree], jax.Array]] = None   # (w, batch) -> [B]
  first: Optional[tuple] = None      # (L(w), ∇L(w), aux) at the step's w, when known already

  def _over_batch(self, fn: Callable[[PyTree], PyTree]) -> PyTree:
    if self.micro_batches == 1:
      return fn(self.batch)
    size = batching.num_examples(self.batch) // self.micro_batches
    return mean_over(fn, batching.split(self.batch, size, interleave=True))

  def value_and_grad(self, params: PyTree) -> tuple[jax.Array, PyTree, PyTree]:
    """(L(w), ∇L(w), aux)."""
    def one(batch):
      (loss, aux), grad = jax.value_and_grad(self.loss_fn, has_aux=True)(params, batch)
      return loss, grad, aux
    return self._over_batch(one)

  def first_gradient(self, params: PyTree) -> tuple[jax.Array, PyTree, PyTree]:
    """(L(w), ∇L(w), aux) at the step's w: `first` when given, else one pass."""
    return self.first if self.first is not None else self.value_and_grad(params)

  def grad(self, params: PyTree) -> PyTree:
    """∇L(w) (the aux of this pass is discarded)."""
    return self._over_batch(lambda batch: jax.grad(self.loss_fn, has_aux=True)(params, batch)[0])
