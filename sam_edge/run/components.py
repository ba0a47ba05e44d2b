"""The jitted pieces of one run, each compiled once: the training step, the measurement reading
the training state, the measured batch, and the training arrays placed on the mesh."""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
import optax

from sam_edge.curvature import measure
from sam_edge.data import batching
from sam_edge.optim import sam_steps, update
from sam_edge.optim.sam import SamSettings
from sam_edge.run import devices, loop
from sam_edge.run.problem import Problem
from sam_edge.run.settings import RunSettings

PyTree = Any


def make_train_step(problem: Problem, optimizer: optax.GradientTransformation,
                    sam: SamSettings, batch_size: int, place: devices.Placement) -> Callable:
  """Jitted `(state, arrays, data_key, constants) -> (state, loss)`: draws the step's batch on
  device (augmented if the problem says so), sharded along the mesh, then takes one step of SAM
  in front of the base optimizer (the base optimizer alone when ρ = 0), with the forward pass in
  the problem's compute dtype, the SAM variant's random draws from the step's key
  (`sam_steps.step_key`); the new state stays replicated. The old state is donated."""
  compute_loss = problem.loss_fn(problem.compute_dtype)
  example_losses = problem.example_loss_fn(problem.compute_dtype)

  def train_step(state, arrays, data_key, constants):
    batch = place.constrain_batch(batching.batch_at(arrays, data_key, state.step, batch_size))
    if problem.augment is not None:
      batch = problem.augment(batch, data_key, state.step)
    loss_fn = lambda p, b: compute_loss(p, state.model_state, b, constants)
    new_state, loss = update.sam_update(
        loss_fn, optimizer, sam, state, batch, key=sam_steps.step_key(data_key, state.step),
        example_losses=lambda p, b: example_losses(p, state.model_state, b, constants))
    return place.constrain_replicated(new_state), loss
  return jax.jit(train_step, donate_argnums=0)


def make_state_measure(problem: Problem, settings: measure.MeasureSettings,
                       data_key: jax.Array) -> Callable:
  """`(state, batch, measure_state, key) -> (record, next measure_state)`:
  `measure.make_measure` reading the training state (the SAM variant's state and the SAM key the
  training step of this step draws from, `data_key` being the run's)."""
  run = measure.make_measure(problem.measured_forward(), problem.output_loss, settings)
  constants = problem.constants

  def from_state(state: update.TrainState, batch, measure_state, key):
    context = measure.Context(state.model_state, state.opt_state, state.step, constants,
                              state.sam_state, sam_steps.step_key(data_key, state.step))
    return run(state.params, context, batch, measure_state, key)
  return from_state


def measure_batches(problem: Problem, settings: RunSettings, place: devices.Placement
                    ) -> Callable:
  """`(arrays, key, step) -> the batch a measurement at `step` uses`: the step's training batch
  (un-augmented, as the reference), or the first --measure_examples training examples, placed
  once."""
  if settings.measure_examples:
    n = settings.measure_examples
    first = jax.tree.map(lambda a: np.asarray(a[:n]), problem.train_arrays)
    fixed = place.shard(first) if n % place.size == 0 else place.replicate(first)
    return lambda arrays, key, step_: fixed
  return jax.jit(lambda arrays, key, step_: place.constrain_batch(
      batching.batch_at(arrays, key, step_, settings.batch_size)))


def place_arrays(problem: Problem, settings: RunSettings, place: devices.Placement) -> PyTree:
  """The training arrays on the mesh: sharded when every step uses them whole (full batch),
  replicated when steps gather batches from them."""
  full_batch = batching.num_examples(problem.train_arrays) == settings.batch_size
  return (place.shard if full_batch else place.replicate)(problem.train_arrays)


def components(problem: Problem, settings: RunSettings, run_keys: dict,
               place: devices.Placement) -> loop.Components:
  """The jitted pieces of one run (each compiled once), with its arrays placed on the mesh."""
  update = make_train_step(problem, settings.optimizer.make(), settings.sam, settings.batch_size,
                           place)
  constants = place.replicate(problem.constants)
  problem = dataclasses.replace(problem, constants=constants)
  return loop.Components(
      update=lambda state, arrays, key: update(state, arrays, key, constants),
      measure=make_state_measure(problem, settings.measure, run_keys["data"]),
      batch=measure_batches(problem, settings, place),
      train_arrays=place_arrays(problem, settings, place), data_key=run_keys["data"],
      measure_key=run_keys["measure"],
      evaluate=lambda state: problem.evaluate(state.params, state.model_state))
