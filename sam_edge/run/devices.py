"""Devices and hosts: the mesh, where arrays live, and the multi-host start. Nothing else in the
project knows about devices.

A run uses a one-axis `jax.sharding.Mesh` over its devices (all of them by default, the first
`--num_devices` otherwise), axis "data". Under GSPMD the same jitted step and measurement run on
it unchanged:

  * batches are sharded along "data" (each device holds batch_size / D examples; a batch size
    that D does not divide is refused up front);
  * parameters, optimiser state, model state and the measurements' vectors are replicated;
  * the training arrays are sharded along "data" when a step uses them whole (full batch), and
    replicated otherwise (each step then gathers its batch on device and reshards it).

Several hosts: `jax.distributed.initialize` runs when --coordinator_address, --num_processes and
--process_id are given, or when jax detects a cluster by itself (a TPU slice, Slurm with more
than one task). Every host reads the same data (a pure function of the seed) and hands jax only
the shards of its own devices (`jax.make_array_from_callback`), so each host feeds its share of
every batch; process 0 alone writes the PDFs, the pickle and TensorBoard scalars.
"""

import dataclasses
import os
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sam_edge.pytree import PyTree

AXIS = "data"


def initialize(coordinator_address: Optional[str], num_processes: Optional[int],
               process_id: Optional[int]) -> Optional[str]:
  """Starts `jax.distributed` when asked (all three flags) or when a cluster is detected; returns
  a line describing it, or None for a single process. Call it before any other jax call."""
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  # A multi-host job jax configures by itself: Slurm with more than one task, or a TPU slice.
  elif ((int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in os.environ)
        or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")):
    jax.distributed.initialize()
  else:
    return None
  return (f"process {jax.process_index()} of {jax.process_count()}: "
          f"{jax.local_device_count()} local of {jax.device_count()} devices")


@dataclasses.dataclass(frozen=True)
class Placement:
  """The mesh of a run and the shardings on it."""
  mesh: Mesh

  @property
  def size(self) -> int:
    return self.mesh.size

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  @property
  def sharded(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec(AXIS))

  def describe(self) -> dict:
    """The mesh for logs and the pickle's `environment`."""
    devices = self.mesh.devices.ravel()
    return {"axis": AXIS, "devices": int(self.size), "platform": devices[0].platform,
            "device_ids": [int(d.id) for d in devices], "processes": jax.process_count()}

  def _put(self, tree: PyTree, sharding: NamedSharding) -> PyTree:
    def put(x):
      host = np.asarray(x)
      return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree.map(put, tree)

  def replicate(self, tree: PyTree) -> PyTree:
    """Every array of `tree` on every device of the mesh (from this host's copy)."""
    return self._put(tree, self.replicated)

  def shard(self, tree: PyTree) -> PyTree:
    """Every array of `tree` split along its first axis over the mesh."""
    return self._put(tree, self.sharded)

  def constrain_batch(self, batch: PyTree) -> PyTree:
    """Inside jit: the batch sharded along its examples."""
    return jax.lax.with_sharding_constraint(batch, self.sharded)

  def constrain_replicated(self, tree: PyTree) -> PyTree:
    """Inside jit: `tree` replicated."""
    return jax.lax.with_sharding_constraint(tree, self.replicated)


def placement(num_devices: Optional[int] = None) -> Placement:
  """A one-axis mesh over the first `num_devices` devices (all by default)."""
  devices = jax.devices()
  if num_devices is not None:
    devices = devices[:num_devices]
  return Placement(Mesh(np.array(devices), (AXIS,)))


def is_writer() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def host_copy(x: Any) -> np.ndarray:
  """An array on this host as numpy; a replicated array spread over several hosts is read from
  this host's own first copy (the others' devices cannot be read from here)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable and x.is_fully_replicated:
    x = x.addressable_data(0)
  return np.asarray(x)


def local_sharding() -> jax.sharding.Sharding:
  """This process's first device, where arrays read without a template land when the devices
  they were saved from are not here (another topology)."""
  return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
