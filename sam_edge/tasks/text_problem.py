"""The character-level language-model problem: the corpus windows (`text_task.load_windows`,
sequence_length + 1 characters, uint8 host arrays) + the transformer + the mean next-character
cross-entropy -> `run.problem.Problem`. The held-out loss and error (the fraction of next
characters whose arg-max prediction is wrong) are `held_out_metrics`'s.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp

from sam_edge.data import batching, order
from sam_edge.models import linearize, losses, precision, transformer
from sam_edge.run.problem import Problem
from sam_edge.tasks.text_config import TextConfig


def build(c: TextConfig, key: jax.Array, windows: Any) -> Problem:
  """The transformer (or its linearization at w0), its loss on the training windows (host arrays
  that the run places on its devices) in --batch_order, and the held-out metrics
  (`held_out_metrics`). `windows` is `text_task.Windows`; with the reference order the training
  windows beyond whole batches are dropped, as the reference drops them."""
  train_windows = windows.train
  batch_order = None
  if c.data.batch_order == "reference":
    train_windows = train_windows[:order.whole_batches(len(train_windows), c.data.batch_size)]
    batch_order = order.BufferedOrder(len(train_windows), c.data.batch_size, (c.data.seed, 1))
  lm = transformer.make_language_model(
      num_layers=c.model.num_layers, num_heads=c.model.num_heads, key_size=c.model.key_size,
      model_size=c.model.model_size, sequence_length=c.data.sequence_length)
  train = {"window": train_windows}                 # uint8 [W, T+1] on the host: the run places it
  params = jax.jit(lm.init)(key, train["window"][:1, :-1].astype(jnp.int32))
  # logits [B, T, V] float32
  constants, logits = linearize.in_regime(lm.apply, params, c.model.regime)

  def forward(p, model_state, batch, constants, dtype=jnp.float32):
    inputs, _ = transformer.split_window(batch["window"])          # [B, T]
    return logits(p, constants, inputs, dtype), model_state

  def output_loss(outputs, batch):                                 # outputs [B, T, V]
    _, targets = transformer.split_window(batch["window"])
    return transformer.next_token_loss(outputs, targets)

  evaluate = held_out_metrics(c, logits, windows)
  num_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"{os.path.basename(c.data.training_data)}: {len(train_windows)} training and "
        f"{len(windows.test)} test windows of {c.data.sequence_length + 1} characters; transformer "
        f"with {num_params} parameters", flush=True)
  return Problem(
      forward=forward, output_loss=output_loss, params=params, train_arrays=train,
      constants=constants, compute_dtype=precision.DTYPES[c.model.compute_dtype], order=batch_order,
      evaluate=lambda p, s, c: evaluate((p, c)),
      batch_error=lambda outputs, batch: jnp.mean(transformer.per_sequence_error(
          outputs, transformer.split_window(batch["window"])[1])),
      report=lambda e: f"test_loss: {e['test_loss']}",
      description={"parameters": int(num_params), "training_windows": len(train_windows),
                   "test_windows": len(windows.test),
                   **({} if windows.validation is None
                      else {"validation_windows": len(windows.validation)})})


def held_out_metrics(c: TextConfig, logits: Any, windows: Any) -> Any:
  """`(params, constants) -> {["validation_loss", "validation_error",] "test_loss",
  "test_error"}` (floats): the mean over every validation window (with a validation split) and,
  with --test_batches=all, every test window of its mean next-character cross-entropy and error,
  --batch_size windows at a time (compiled once per split shape); with reference,
  `reference_test_metrics`."""
  reference = c.data.test_batches == "reference"
  named = (("validation", windows.validation), ("test", None if reference else windows.test))
  splits = {name: {"window": w} for name, w in named if w is not None}   # placed by each evaluation

  def window_metrics(args, batch):                                   # {[B], [B]}
    inputs, targets = transformer.split_window(batch["window"])
    out = logits(*args, inputs)
    return {"loss": transformer.per_sequence_loss(out, targets),
            "error": transformer.per_sequence_error(out, targets)}
  means = jax.jit(lambda args, arrays: batching.chunked_mean(
      window_metrics, args, arrays, c.data.batch_size))
  test = reference_test_metrics(c, logits, windows) if reference else lambda args: {}
  return lambda args: {**{f"{name}_{k}": float(v) for name, arrays in splits.items()
                          for k, v in means(args, arrays).items()}, **test(args)}


def reference_test_metrics(c: TextConfig, logits: Any, windows: Any) -> Any:
  """`(params, constants) -> {"test_loss", "test_error"}`: the reference's test loss, the mean
  over the K test batches of `order.reference_test_batches` (drawn once from the seed) of each
  batch's loss, the mean next-character cross-entropy over its non-padding targets (and likewise
  its error)."""
  d = c.data
  index = order.reference_test_batches(len(windows.test), windows.test_characters,
                                       d.batch_size, d.sequence_length, (d.seed, 2))
  batches = windows.test[index]                                      # uint8 [K, B, T+1]

  def batch_metrics(args, batch):                                    # {[], []}
    inputs, targets = transformer.split_window(batch)
    out = logits(*args, inputs)
    mask = (targets != transformer.PAD).astype(jnp.float32)
    wrong = losses.misclassified(out, targets)
    return {"test_loss": transformer.next_token_loss(out, targets),
            "test_error": jnp.sum(mask * wrong) / jnp.maximum(jnp.sum(mask), 1.0)}
  metrics = jax.jit(lambda args, batches: jax.tree.map(
      jnp.mean, jax.lax.map(lambda b: batch_metrics(args, b), batches)))
  return lambda args: {k: float(v) for k, v in metrics(args, batches).items()}

