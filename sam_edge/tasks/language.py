"""The character-level language-model experiment: flags -> corpus checks -> experiment.Problem.

The corpus (ASCII, no NUL) is checked before anything is compiled; it is cut into windows of
sequence_length + 1 characters held on the device as uint8. The loss is the mean next-character
cross-entropy; the test loss is the mean over *all* test windows, and the test error the fraction
of next characters whose arg-max prediction is wrong.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import batching, errors, experiment, linearize, precision
from sam_edge.data import text
from sam_edge.models import transformer


def problems(f: Any) -> list[str]:
  """Problems with the model and split flags (the corpus is checked by `load_windows`)."""
  p = []
  for name in ("num_layers", "num_heads", "key_size", "model_size", "sequence_length"):
    if getattr(f, name) < 1:
      p.append(f"--{name} must be at least 1, got {getattr(f, name)}")
  if not 0 < f.test_fraction < 1:
    p.append(f"--test_fraction must be between 0 and 1 (exclusive), got {f.test_fraction}")
  return p


def load_windows(f: Any, log=print) -> tuple[np.ndarray, np.ndarray]:
  """Reads and checks the corpus (or corpora): (train windows, test windows), uint8 [W, T+1].

  Without --test_data the last --test_fraction of --training_data is held out.
  Raises errors.InputError with one line naming the file and the problem.
  """
  try:
    corpus = text.read_corpus(f.training_data)
    if f.test_data:
      train, test, test_path = corpus, text.read_corpus(f.test_data), f.test_data
    else:
      train, test = text.split_corpus(corpus, test_fraction=f.test_fraction)
      test_path = f.training_data
      log(f"no --test_data: holding out the last {f.test_fraction:.0%} of {f.training_data} "
          f"({len(test)} characters) as test data")
    train_windows = text.make_windows(train, sequence_length=f.sequence_length)
    test_windows = text.make_windows(test, sequence_length=f.sequence_length)
    text.check_enough_windows(train_windows, batch_size=f.batch_size,
                              sequence_length=f.sequence_length, path=f.training_data,
                              num_chars=len(train))
    text.check_enough_windows(test_windows, batch_size=f.batch_size,
                              sequence_length=f.sequence_length, path=test_path, what="test",
                              minimum=1, num_chars=len(test))
  except text.CorpusError as e:
    raise errors.InputError(str(e)) from None
  return train_windows, test_windows


def build(f: Any, key: jax.Array, train_windows: np.ndarray, test_windows: np.ndarray
          ) -> experiment.Problem:
  """The transformer (or its linearisation at w0), its loss on the training windows (host arrays
  that the run places on its devices), and the test loss."""
  lm = transformer.make_language_model(
      num_layers=f.num_layers, num_heads=f.num_heads, key_size=f.key_size,
      model_size=f.model_size, sequence_length=f.sequence_length)
  train = {"window": train_windows}                 # uint8 [W, T+1] on the host: the run places it
  test = {"window": test_windows}                   # on the host: placed by each evaluation
  params = jax.jit(lm.init)(key, train["window"][:1, :-1].astype(jnp.int32))
  constants, logits = linearize.in_regime(lm.apply, params, f.regime)   # logits [B, T, V] float32

  def loss_in(dtype):
    def loss_fn(p, model_state, batch, constants):
      inputs, targets = transformer.split_window(batch["window"])   # [B, T] each
      return (transformer.next_token_loss(logits(p, constants, inputs, dtype), targets),
              model_state)
    return loss_fn

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
  return experiment.Problem(
      loss_fn=loss_in(jnp.float32), compute_loss=precision.compute_loss(f.compute_dtype, loss_in),
      params=params, train_arrays=train, constants=constants,
      evaluate=lambda p, s: {k: float(v) for k, v in metrics((p, constants), test).items()},
      report=lambda e: f"test_loss: {e['test_loss']}",
      description={"parameters": int(num_params), "training_windows": len(train_windows),
                   "test_windows": len(test_windows)})
