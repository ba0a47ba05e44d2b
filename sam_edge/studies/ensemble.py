"""The ensemble of a cell's runs (`compare --global_metrics=ensemble_error`), as the taxonomy's
`test_ensemble_average` (Yang et al. 2021, loss_acc.py --ensemble-average-acc): with p_k(x) the
softmax outputs of run k on the test set (evaluation mode, each run with its own BatchNorm
statistics) and K runs,

    ensemble_error = (1/N) Σ_i [argmax_c (1/K) Σ_k p_k,c(x_i) ≠ y_i],

the error of the averaged class probabilities; the ensemble of K identical runs has their error.
"""

import jax
import jax.numpy as jnp

from sam_edge.models import losses


@jax.jit
def ensemble_error(probabilities: jax.Array, labels: jax.Array) -> jax.Array:
  """The module doc's error of `probabilities` [K, N, classes] against `labels` [N]."""
  return jnp.mean(losses.misclassified(jnp.mean(probabilities, axis=0), labels))
