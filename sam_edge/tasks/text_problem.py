"""The character-level language-model problem: the corpus windows + the transformer + the loss
-> `run.problem.Problem`.

The windows (`text_task.load_windows`, sequence_length + 1 characters) are handed to the run as
uint8 host arrays. The loss is the mean next-character cross-entropy; the test loss is the mean
over *all* test windows, and the test error the fraction of next characters whose arg-max
prediction is wrong.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.data import batching
from sam_edge.models import linearize, precision, transformer
from sam_edge.run.problem import Problem


def build(f: Any, key: jax.Array, train_windows: np.ndarray, test_windows: np.ndarray
          ) -> Problem:
  """The transformer (or its linearization at w0), its loss on the training windows (host arrays
  that the run places on its devices), and the test loss."""
  lm = transformer.make_language_model(
      num_layers=f.num_layers, num_heads=f.num_heads, key_size=f.key_size,
      model_size=f.model_size, sequence_length=f.sequence_length)
  train = {"window": train_windows}                 # uint8 [W, T+1] on the host: the run places it
  test = {"window": test_windows}                   # on the host: placed by each evaluation
  params = jax.jit(lm.init)(key, train["window"][:1, :-1].astype(jnp.int32))
  constants, logits = linearize.in_regime(lm.apply, params, f.regime)   # logits [B, T, V] float32

  def forward(p, model_state, batch, constants, dtype=jnp.float32):
    inputs, _ = transformer.split_window(batch["window"])          # [B, T]
    return logits(p, constants, inputs, dtype), model_state

  def output_loss(outputs, batch):                                 # outputs [B, T, V]
    _, targets = transformer.split_window(batch["window"])
    return transformer.next_token_loss(outputs, targets)

  def window_metrics(args, batch):                                 # {[B], [B]}
    inputs, targets = transformer.split_window(batch["window"])
    out = logits(*args, inputs)
    return {"test_loss": transformer.per_sequence_loss(out, targets),
            "test_error": transformer.per_sequence_error(out, targets)}

  metrics = jax.jit(lambda args, arrays: batching.chunked_mean(
      window_metrics, args, arrays, f.batch_size))
  num_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"{os.path.basename(f.training_data)}: {len(train_windows)} training and "
        f"{len(test_windows)} test windows of {f.sequence_length + 1} characters; transformer "
        f"with {num_params} parameters", flush=True)
  return Problem(
      forward=forward, output_loss=output_loss, params=params, train_arrays=train,
      constants=constants, compute_dtype=precision.DTYPES[f.compute_dtype],
      evaluate=lambda p, s: {k: float(v) for k, v in metrics((p, constants), test).items()},
      report=lambda e: f"test_loss: {e['test_loss']}",
      description={"parameters": int(num_params), "training_windows": len(train_windows),
                   "test_windows": len(test_windows)})
