"""What a SAM variant is: a small interface, as a curvature kind is (`curvature.kind`).

A variant is one module of `variants/` holding its `Variant` and its own flags (`options.Option`,
defaults from the paper's released code), and one line of the registry `sam.SAM_VARIANTS`. It
gives

    init(params) -> state                                   its first state ({}: none)
    direction(sam, oracle, params, state, key, step) -> oracle.Gradients

the direction d the base optimizer sees at w = `params`, given the settings `sam`
(`sam.SamSettings`: ρ > 0, its flag values `sam.values`, the perturbed parameters, ...), the loss's
oracle (`oracle.Oracle`: L, ∇L and aux on the batch, the per-example losses where the caller has
them, and ∇L(w) itself where the caller took it already: `oracle.first_gradient`), its state, the
step's key (`sam_steps.step_key`; None where the caller draws nothing) and the step t; the
`Gradients` carry L(w), ∇L(w) and aux (where the variant takes no gradient at w and the oracle
has no `first`, at the point it took its gradient: `oracle.Gradients`) and the variant's next
state. ρ = 0 never reaches a variant (`update`).

The rest is optional: `edge(base, E, η, ρ, ||g||, wd)` its stability edge on the base optimizer
`base` whose own edge, less wd, is E (None where none is known) and `edge_formula(base, formula)`
its name; `title` for figure titles; `groups`: m-sharpness applies (no state, no random draws);
`accumulates`: its step is defined over micro-batches; `problems(sam)` its cross-flag problems,
one line each; `host_period(sam)` a period k when its step is compiled as two programs chosen on
the host (step t is phase True iff t mod k = 0; `sam.SamSettings.phase`, `update.host_phased`).

No jax here: defining the flags stays fast, and the variants' modules import jax inside their
functions only.
"""

import dataclasses
from typing import Any, Callable, Optional

from sam_edge import options
from sam_edge.pytree import PyTree

Direction = Callable[..., Any]     # (sam, oracle, params, state, key, step) -> oracle.Gradients


@dataclasses.dataclass(frozen=True)
class Variant:
  """One SAM variant (module doc)."""
  name: str
  formula: str
  options: tuple[options.Option, ...]
  title: str
  direction: Direction
  init: Callable[[PyTree], PyTree] = lambda params: {}
  edge: Callable[..., Any] = lambda *args: None
  edge_formula: Callable[[Any, str], Optional[str]] = lambda base, formula: None
  groups: bool = False
  accumulates: bool = True
  problems: Callable[[Any], list[str]] = lambda sam: []
  host_period: Callable[[Any], Optional[int]] = lambda sam: None


def perturbed(perturbation: Callable[[PyTree, PyTree, Any, Any], PyTree]) -> Direction:
  """The direction of a variant given by its perturbation ε(w, g, ρ, values):
  d = ∇L(w + R ε(w, R g)) (`sam_steps.perturbed_direction`)."""
  def direction(sam: Any, oracle: Any, params: PyTree, state: PyTree, key: Any,
                step: Any) -> Any:
    from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel (module doc)
    return sam_steps.perturbed_direction(perturbation, sam, oracle, params, state)
  return direction
