"""One central-flow study end to end: the problem from the image task's flags (the same model,
loss, data and initialisation as `python -m image_classification` with those flags), GD, the
central flow and gradient flow (`trajectory`), the figures (`summary`) and the outputs.

Measurements' precision throughout (`jax.default_matmul_precision("highest")`); `--seed` decides
everything random: the initialisation (the run's `init` key) and Lanczos' restarts (its
`measure` key).
"""

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from sam_edge.cli import config
from sam_edge.flows import outputs, summary, trajectory
from sam_edge.flows.substep import Eigen
from sam_edge.run import init_params
from sam_edge.run import problem as problem_lib
from sam_edge.tasks.image_task import TASK


def full_batch_loss(problem: problem_lib.Problem) -> tuple[Callable, jax.Array, Any]:
  """(loss(w, batch) on raveled parameters, w_0, the whole training set as the batch)."""
  w0, unravel = ravel_pytree(problem.params)
  train_loss = problem.loss_fn(problem.model_state, problem.constants)
  loss = lambda w, batch: train_loss(unravel(w), batch)[0]
  return loss, w0, jax.tree.map(jnp.asarray, problem.train_arrays)


def settings(v: Mapping[str, Any]) -> trajectory.Settings:
  """The integration's settings from the command's values {flag: value}."""
  return trajectory.Settings(step_size=v["step_size"], steps=v["max_steps"],
                             substeps=v["substeps"], critical=v["critical_eigenvalues"],
                             eigen=Eigen(v["lanczos_max_steps"], v["lanczos_tol"]))


def run(values: Mapping[str, Any], log: Callable[[str], None] = print) -> int:
  """Builds the problem of the command's values {flag: value} (`cli.config`; started from
  --init_params when given), integrates, prints the figures and writes the outputs into --out;
  returns 0."""
  c = config.of_values(TASK, values)
  keys = problem_lib.keys(c.run.seed)
  problem = TASK.build(c.problem, keys["init"])
  if c.run.init_params:                # GD and the flows start from the loaded parameters
    problem, line = init_params.initialise(problem, c.run.init_params)
    log(line)
  loss, w0, batch = full_batch_loss(problem)
  s = settings(values)
  log(f"GD, central flow (k = {s.critical}, {s.substeps} substeps per step) and gradient flow "
      f"from the same {w0.size} parameters, η = {s.step_size:g}, {s.steps} steps")
  with jax.default_matmul_precision("highest"):
    curves = trajectory.run(loss, w0, batch, s, keys["measure"], log)
  seconds_per_step = float(curves["seconds"]) / max(len(curves["step"]) - 1, 1)
  final = {**summary.metrics(curves, s.step_size, values["average_window"]),
           "seconds_per_step": seconds_per_step}
  for line in summary.table(final, seconds_per_step):
    log(line)
  title = f"{TASK.title(c.problem)}, GD η = {s.step_size:g}: central flow (k = {s.critical})"
  paths = outputs.write(values["out"], dict(values), curves, final, title)
  log(f"wrote {', '.join(paths)}")
  return 0
