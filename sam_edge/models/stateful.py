"""Losses of models with BatchNorm state, as pure functions of (params, batch_stats, batch).

A model here is a flax module called as ``model.apply({"params": w, "batch_stats": s}, x,
train)`` (``resnet.ResNet``, ``resnet.WideResNet``); ``loss(logits, labels)`` is a mean loss
(``sam_edge.losses``) and ``preprocess(images)`` maps a batch's raw images to the model's float32
inputs. Batches are ``{"image": [B, H, W, C], "label": [B]}``. With ``f(w, s; x)`` the network
in train mode (BatchNorm with the statistics of the batch ``x``) and ``f̄(w, s; x)`` in eval mode
(BatchNorm with the running statistics ``s``):

  train_loss:   (w, s, batch) -> (L(w) = loss(f(w; x), y),  s' = 0.9 s + 0.1 (μ, v)(w; x))
  measure_loss: (w, s, batch) -> L(w)             ("batch", the default)
                               or loss(f̄(w, s; x), y)   ("running")
  eval_logits:  (w, s, images) -> f̄(w, s; x)

The trainer's convention is ``loss_fn(params, batch) -> (loss, aux)`` with the current ``s``
closed over and ``aux = s'``. One SAM step then reads

  (L, s'), g = value_and_grad(train_loss(., s, batch), has_aux=True)(w)   # keeps s'
  g_SAM, _   = grad(train_loss(., s, batch), has_aux=True)(w + ρ g/‖g‖)  # discards its stats
  w ← w − η g_SAM,  s ← s'

so the running statistics move once per step, from the unperturbed pass; the ascent pass at the
perturbed weights uses its own batch statistics (it must: that is the loss SAM differentiates)
but never writes them.

Which loss is "the training loss" whose Hessian a measurement takes: ``measure_loss`` with
``statistics="batch"`` (default) is L(w) with the batch statistics of the measured batch,
exactly the function whose gradient the training step follows (its gradient *is* the g above).
Its Hessian therefore governs the stability of the update, which is what 2/η and the SAM-edge
are thresholds for. The running statistics are an exponential average over past weights and
batches, constant in w: the eval-mode loss has a different gradient and Hessian (no
differentiation through μ and v), and at initialisation its statistics (0, 1) describe no
network at all. Either way the measurement is pure: it returns a scalar, never statistics, so a
measurement cannot change the training trajectory. Train-mode statistics couple the examples of
a batch, so the measured batch must be the training batch as a whole, not chunks of it.
"""

from typing import Any, Callable

import flax.linen as nn
import jax

PyTree = Any
Loss = Callable[[jax.Array, jax.Array], jax.Array]        # (logits [B, K], labels [B]) -> scalar
Preprocess = Callable[[jax.Array], jax.Array]             # raw images -> float32 [B, H, W, C]
STATISTICS = ("batch", "running")


def init_variables(model: nn.Module, key: jax.Array, images: jax.Array
                   ) -> tuple[PyTree, PyTree]:
  """``(params, batch_stats)`` of ``model`` initialised with ``key`` for inputs shaped like
  ``images`` (float32 ``[B, H, W, C]``, already preprocessed); running mean 0, variance 1."""
  variables = model.init(key, images, train=False)
  return variables["params"], variables["batch_stats"]


def train_loss(model: nn.Module, loss: Loss, preprocess: Preprocess
               ) -> Callable[[PyTree, PyTree, PyTree], tuple[jax.Array, PyTree]]:
  """``(params, batch_stats, batch) -> (L, new_batch_stats)``: the train-mode loss with the batch
  statistics of ``batch``, and the running statistics moved once towards them,
  ``s' = 0.9 s + 0.1 (μ, v)``."""
  def fn(params: PyTree, batch_stats: PyTree, batch: PyTree) -> tuple[jax.Array, PyTree]:
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats},
                                  preprocess(batch["image"]), True, mutable=["batch_stats"])
    return loss(logits, batch["label"]), updates["batch_stats"]
  return fn


def measure_loss(model: nn.Module, loss: Loss, preprocess: Preprocess, *,
                 statistics: str = "batch") -> Callable[[PyTree, PyTree, PyTree], jax.Array]:
  """``(params, batch_stats, batch) -> L`` (a scalar; statistics are never returned).

  ``statistics="batch"``: the train-mode loss with the batch statistics of ``batch`` (equal to
  ``train_loss(...)[0]``, independent of ``batch_stats``); ``"running"``: the eval-mode loss with
  the running statistics ``batch_stats``. See the module docstring for the choice.
  """
  if statistics not in STATISTICS:
    raise ValueError(f"Unknown statistics {statistics!r}; expected one of {STATISTICS}")
  if statistics == "batch":
    train = train_loss(model, loss, preprocess)

    def batch_fn(params: PyTree, batch_stats: PyTree, batch: PyTree) -> jax.Array:
      return train(params, batch_stats, batch)[0]
    return batch_fn
  logits = eval_logits(model, preprocess)

  def running_fn(params: PyTree, batch_stats: PyTree, batch: PyTree) -> jax.Array:
    return loss(logits(params, batch_stats, batch["image"]), batch["label"])
  return running_fn


def eval_logits(model: nn.Module, preprocess: Preprocess
                ) -> Callable[[PyTree, PyTree, jax.Array], jax.Array]:
  """``(params, batch_stats, images) -> logits [B, K]`` in eval mode (running statistics): each
  example's logits depend on that example only, so any chunking of a test set gives the same."""
  def fn(params: PyTree, batch_stats: PyTree, images: jax.Array) -> jax.Array:
    return model.apply({"params": params, "batch_stats": batch_stats}, preprocess(images), False)
  return fn
