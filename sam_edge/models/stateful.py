"""Models with BatchNorm state, as pure functions of (params, batch_stats, images).

A model here is a flax module called as ``model.apply({"params": w, "batch_stats": s}, x,
train)`` (``resnet.ResNet``, ``resnet.WideResNet``); ``preprocess(images)`` maps a batch's raw
images to the model's float32 inputs. With ``f(w, s; x)`` the network in train mode (BatchNorm
with the statistics of the batch ``x``) and ``f̄(w, s; x)`` in eval mode (BatchNorm with the
running statistics ``s``):

  train_forward: (w, s, images) -> (f(w; x),  s' = 0.9 s + 0.1 (μ, v)(w; x))
  eval_logits:   (w, s, images) -> f̄(w, s; x)

The training loss is L(w) = loss(f(w; x), y), with the current ``s`` closed over and ``s'`` as
the step's aux. One SAM step then reads

  (L, s'), g = value_and_grad(L at s, has_aux=True)(w)          # keeps s'
  g_SAM, _   = grad(L at s, has_aux=True)(w + ρ g/‖g‖)          # discards its stats
  w ← w − η g_SAM,  s ← s'

so the running statistics move once per step, from the unperturbed pass; the ascent pass at the
perturbed weights uses its own batch statistics (it must: that is the loss SAM differentiates)
but never writes them.

Which loss is "the training loss" whose Hessian a measurement takes: L(w) with the batch
statistics of the measured batch, exactly the function whose gradient the training step follows
(its gradient *is* the g above).
Its Hessian therefore governs the stability of the update, which is what 2/η and the SAM-edge
are thresholds for. The running statistics are an exponential average over past weights and
batches, constant in w: the eval-mode loss has a different gradient and Hessian (no
differentiation through μ and v), and at initialisation its statistics (0, 1) describe no
network at all. Either way the measurement is pure: it returns a scalar, never statistics, so a
measurement cannot change the training trajectory. Train-mode statistics couple the examples of
a batch, so the measured batch must be the training batch as a whole, not chunks of it.
"""

from typing import Callable

import flax.linen as nn
import jax

from sam_edge.pytree import PyTree

Preprocess = Callable[[jax.Array], jax.Array]             # raw images -> float32 [B, H, W, C]


def init_variables(model: nn.Module, key: jax.Array, images: jax.Array
                   ) -> tuple[PyTree, PyTree]:
  """``(params, batch_stats)`` of ``model`` initialised with ``key`` for inputs shaped like
  ``images`` (float32 ``[B, H, W, C]``, already preprocessed); running mean 0, variance 1."""
  variables = model.init(key, images, train=False)
  return variables["params"], variables["batch_stats"]


def train_forward(model: nn.Module, preprocess: Preprocess
                  ) -> Callable[[PyTree, PyTree, jax.Array], tuple[jax.Array, PyTree]]:
  """``(params, batch_stats, images) -> (logits, new_batch_stats)``: the network in train mode,
  with the batch statistics of ``images``, and the running statistics moved once towards them,
  ``s' = 0.9 s + 0.1 (μ, v)``."""
  def fn(params: PyTree, batch_stats: PyTree, images: jax.Array) -> tuple[jax.Array, PyTree]:
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats},
                                  preprocess(images), True, mutable=["batch_stats"])
    return logits, updates["batch_stats"]
  return fn


def eval_logits(model: nn.Module, preprocess: Preprocess
                ) -> Callable[[PyTree, PyTree, jax.Array], jax.Array]:
  """``(params, batch_stats, images) -> logits [B, K]`` in eval mode (running statistics): each
  example's logits depend on that example only, so any chunking of a test set gives the same."""
  def fn(params: PyTree, batch_stats: PyTree, images: jax.Array) -> jax.Array:
    return model.apply({"params": params, "batch_stats": batch_stats}, preprocess(images), False)
  return fn
