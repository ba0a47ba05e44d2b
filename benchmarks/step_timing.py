"""Single-step timing for benchmarks/throughput.py: our training step, a bare SAM step and the
reference-shaped update, one step at a time, alternating step by step, so that a slow moment of a
shared machine falls on every method alike; each method's least and median step time.

  ours       one call of the run's training step (`run.components.components(...).update`, as
             `run.loop.run_loop` calls it: the step's batch drawn on the device, SAM in front of
             the base optimizer, the state donated), until its new state is ready;
  bare       `throughput.make_bare_step`: g = ∇L(w); for ρ > 0 g = ∇L(w + ρ g/(‖g‖ + 1e-5));
             optax.sgd(η); params and opt_state donated; batches pre-sliced, cycled in order;
  reference  the reference's jitted update on one fixed batch: ε = ρ g/(‖g‖ + 1e-5),
             w ← w − η ∇L(w + ε) (plain SGD, no optax; w donated).

Each step is timed from its dispatch to `block_until_ready` of its result (the loss and the new
parameters), after WARMUP calls that compile it.
"""

import collections
import re
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp

WARMUP = 2
METHODS = ("ours", "bare", "reference")


def reference_update(loss_fn: Callable, step_size: float, rho: float, eps: float) -> Callable:
  """The reference-shaped update, jitted: (w, state, batch) -> (w', state', loss), `loss_fn(w,
  batch, state) -> (loss, state')` (the model state, BatchNorm statistics or {}, from the
  unperturbed pass); w and state donated."""
  def update(params, state, batch):
    (loss, new_state), grad = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, state)
    if rho > 0:
      norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grad)))
      scale = rho / (norm + eps)
      grad, _ = jax.grad(loss_fn, has_aux=True)(
          jax.tree.map(lambda p, g: p + scale * g, params, grad), batch, state)
    return jax.tree.map(lambda p, g: p - step_size * g, params, grad), new_state, loss
  return jax.jit(update, donate_argnums=(0, 1))


class Stepper:
  """One method's step, called once per `step()`; returns the seconds it took."""

  def __init__(self, call: Callable[[], object]):
    self.call = call
    for _ in range(WARMUP):
      jax.block_until_ready(call())

  def step(self) -> float:
    start = time.perf_counter()
    jax.block_until_ready(self.call())
    return time.perf_counter() - start


def ours_stepper(ours) -> Stepper:
  """`throughput.OursTimer`'s state and parts, stepped one update at a time."""
  def call():
    step = int(ours.state.step)
    ours.state, ours.measure_state, out = ours.parts.update(
        ours.state, ours.measure_state, ours.parts.train_arrays, ours.parts.data_key, step)
    return ours.state, out
  return Stepper(call)


def bare_stepper(bare) -> Stepper:
  """`throughput.BareTimer`'s step, one batch at a time."""
  def call():
    bare.params, bare.opt_state, bare.state, loss = bare.step(
        bare.params, bare.opt_state, bare.state, bare.batches[bare.i % len(bare.batches)])
    bare.i += 1
    return bare.params, loss
  return Stepper(call)


def reference_stepper(update: Callable, params, model_state, batch) -> Stepper:
  held = {"params": params, "state": model_state}

  def call():
    held["params"], held["state"], loss = update(held["params"], held["state"], batch)
    return held["params"], loss
  return Stepper(call)


def interleaved(steppers: dict[str, Stepper], steps: int) -> dict[str, list[float]]:
  """`steps` single-step times of each method, the methods alternating step by step (the order
  rotating, so that none always follows the same one)."""
  names = list(steppers)
  seconds = {name: [] for name in names}
  for i in range(steps):
    for name in names[i % len(names):] + names[:i % len(names)]:
      seconds[name].append(steppers[name].step())
  return seconds


def summary(seconds: dict[str, list[float]]) -> dict:
  """{method_least_s, method_median_s} of every method, and ours/bare as throughput ratios:
  `ours_over_bare` = least(bare)/least(ours), `ours_over_bare_median` from the medians."""
  row = {}
  for name, times in seconds.items():
    row[f"{name}_least_s"] = min(times)
    row[f"{name}_median_s"] = statistics.median(times)
  row["ours_over_bare"] = row["bare_least_s"] / row["ours_least_s"]
  row["ours_over_bare_median"] = row["bare_median_s"] / row["ours_median_s"]
  row["ours_over_reference"] = row["reference_least_s"] / row["ours_least_s"]
  return row


# ---------------------------------------------------------------------------------------------
# The compiled programs side by side.

_OPCODE = re.compile(r"\b([a-z][a-z0-9-]*)\(")


def hlo_summary(text: str) -> dict:
  """{"entry": Counter of the entry computation's opcodes, "all": Counter over every
  computation, fused ones included} of an optimized HLO module's text (`compiled.as_text()`)."""
  entry, every, in_entry = collections.Counter(), collections.Counter(), False
  for line in text.splitlines():
    stripped = line.strip()
    if stripped.startswith("ENTRY "):
      in_entry = True
    elif stripped == "}":
      in_entry = False
    if " = " not in stripped or stripped.startswith(("HloModule", "ENTRY", "//")):
      continue
    found = _OPCODE.search(stripped.split(" = ", 1)[1])
    if found:
      every[found.group(1)] += 1
      if in_entry:
        entry[found.group(1)] += 1
  return {"entry": entry, "all": every}


def compare_hlo(ours: str, bare: str) -> list[str]:
  """Lines naming the opcodes whose counts differ between two optimized modules."""
  a, b = hlo_summary(ours), hlo_summary(bare)
  lines = [f"instructions: entry {sum(a['entry'].values())} vs {sum(b['entry'].values())}, "
           f"all {sum(a['all'].values())} vs {sum(b['all'].values())} (ours vs bare)"]
  for where in ("entry", "all"):
    for op in sorted(set(a[where]) | set(b[where])):
      if a[where][op] != b[where][op]:
        lines.append(f"  {where:<5} {op:<24} {a[where][op]:>5} {b[where][op]:>5}")
  return lines
