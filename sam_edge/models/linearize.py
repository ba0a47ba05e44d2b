"""The linearized (first-order Taylor, "NTK") model of a network at its initial parameters w0:

    f_lin(w, x) = f(w0, x) + J(w0, x) (w − w0),    J(w0, x) = ∂f(w, x)/∂w at w0,

computed with one forward-mode product, jvp(f(·, x), (w0,), (w − w0,)), whose primal output is
f(w0, x): no Jacobian is formed, and the cost is about two forward passes. f_lin is affine in w,
so under squared error ℓ = (1/(B·C)) Σ (f_lin − y)² the loss Hessian is the constant
Gauss–Newton matrix (2/(B·C)) Jᵀ J of the network at w0.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from sam_edge.models import precision
from sam_edge.pytree import PyTree

Apply = Callable[[PyTree, Any], Any]      # (params, inputs) -> outputs
W0 = "w0"                                 # the expansion point's key in the constants


def linearized_apply(apply: Apply, params0: PyTree, params: PyTree, inputs: Any) -> Any:
  """f_lin(w, x) = f(w0, x) + jvp(f(·, x), (w0,), (w − w0,)) with w0 = `params0`, w = `params`.

  Pure: pass w0 as an argument of a jitted function (closing over it would bake the arrays into
  the compiled program as constants).
  """
  delta = jax.tree.map(lambda w, w0: w - w0, params, params0)
  f0, df = jax.jvp(lambda p: apply(p, inputs), (params0,), (delta,))
  return jax.tree.map(lambda a, b: a + b, f0, df)


def linearize(apply: Apply, params0: PyTree) -> Apply:
  """`(params, inputs) -> f_lin(params, inputs)`: `linearized_apply` with w0 = `params0` bound."""
  return functools.partial(linearized_apply, apply, params0)


def in_regime(apply: Apply, params0: PyTree, regime: str
              ) -> tuple[dict, Callable[..., Any]]:
  """The model a run trains, as `(constants, forward)`.

  `forward(p, constants, inputs, dtype=float32)` is f(w, x) (`regime="network"`) or f_lin(w, x)
  (`"linearized"`), computed in `dtype` (the parameters and w0 cast to it; the inputs are used as
  given) and returned in float32. `constants` is `{"w0": a copy of params0}` for the linearized
  model (a copy: the training state's parameters are donated at every step), `{}` otherwise;
  pass it through the jitted functions rather than closing over it.
  """
  linear = regime == "linearized"
  constants = {W0: jax.tree.map(jnp.copy, params0)} if linear else {}

  def forward(p: PyTree, constants: dict, inputs: Any, dtype: Any = jnp.float32) -> Any:
    p, constants = precision.cast_floats((p, constants), dtype)
    out = (linearized_apply(apply, constants[W0], p, inputs) if linear
           else apply(p, inputs))
    return out.astype(jnp.float32)
  return constants, forward


def expanded_at(constants: dict, params0: PyTree) -> dict:
  """`in_regime`'s constants with the expansion point w0 moved to `params0` (a copy, as there);
  the network regime's constants (no w0) unchanged. A run that starts from other parameters
  than its initialisation (`--init_params`) linearizes around them."""
  if W0 not in constants:
    return constants
  return {**constants, W0: jax.tree.map(jnp.copy, params0)}
