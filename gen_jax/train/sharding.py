"""The device mesh and the shardings of batches and parameters.

The mesh has two axes: `data` (the batch is split over it) and `fsdp`
(large parameters are split over it, as in ZeRO-3 / FSDP; the batch is split
over it too, so every device sees a distinct slice of the global batch).
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gen_jax.errors import UserError

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")
# Parameters with fewer elements than this stay replicated under fsdp.
FSDP_MIN_SIZE = 2 ** 14


def parse_mesh(spec: str, num_devices: int) -> dict:
  """'data=-1,fsdp=2' -> {'data': num_devices // 2, 'fsdp': 2}."""
  sizes = {"data": -1, "fsdp": 1}
  for part in filter(None, (p.strip() for p in spec.split(","))):
    name, _, value = part.partition("=")
    if name not in sizes or not value.lstrip("-").isdigit():
      raise UserError(f"Bad mesh spec {spec!r}: write 'data=N,fsdp=M' with axes "
                      f"{AXES} and integer sizes (-1 = all remaining devices).")
    sizes[name] = int(value)
  known = math.prod(v for v in sizes.values() if v != -1)
  free = [k for k, v in sizes.items() if v == -1]
  if len(free) > 1:
    raise UserError(f"Bad mesh spec {spec!r}: at most one axis may be -1.")
  if free:
    if num_devices % known:
      raise UserError(f"Mesh {spec!r} does not divide the {num_devices} devices.")
    sizes[free[0]] = num_devices // known
  if math.prod(sizes.values()) > num_devices or min(sizes.values()) < 1:
    raise UserError(f"Mesh {spec!r} needs {math.prod(sizes.values())} devices but "
                    f"{num_devices} are available; make the product of the axis "
                    "sizes at most the device count, or use -1 for one axis.")
  return sizes


def make_mesh(spec: str = "data=-1,fsdp=1", devices=None) -> Mesh:
  """A (data, fsdp) mesh over the first data * fsdp devices (all of them with -1)."""
  devices = jax.devices() if devices is None else devices
  sizes = parse_mesh(spec, len(devices))
  n = sizes["data"] * sizes["fsdp"]
  return Mesh(np.asarray(devices[:n]).reshape(sizes["data"], sizes["fsdp"]), AXES)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over data x fsdp."""
  return NamedSharding(mesh, P(BATCH_AXES))


def param_sharding(shape, mesh: Mesh) -> NamedSharding:
  """Split a large array on its largest axis divisible by the fsdp size."""
  n = mesh.shape["fsdp"]
  if n == 1 or math.prod(shape) < FSDP_MIN_SIZE:
    return replicated(mesh)
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] % n == 0:
      spec = [None] * len(shape)
      spec[axis] = "fsdp"
      return NamedSharding(mesh, P(*spec))
  return replicated(mesh)


def gather_for_compute(tree, mesh: Mesh):
  """FSDP's all-gather: inside a jitted function, use the full (replicated) parameters.

  Parameters and optimizer state are *stored* split over `fsdp`; compute sees
  whole weights (ZeRO-3), and the gradients are split again by the output
  shardings of the step. This also keeps XLA from partitioning convolutions
  over their weights' feature axes, which on CPU gave wrong results for
  replicated inputs.
  """
  if mesh.shape["fsdp"] == 1:
    return tree
  return jax.lax.with_sharding_constraint(tree, replicated(mesh))


def tree_shardings(abstract_tree, mesh: Mesh):
  """Shardings for every leaf of a pytree of ShapeDtypeStructs."""
  return jax.tree.map(lambda x: param_sharding(x.shape, mesh), abstract_tree)


def batch_shards(mesh: Mesh) -> int:
  """How many pieces the batch is split into (the data x fsdp devices)."""
  return mesh.shape["data"] * mesh.shape["fsdp"]


def global_batch_size_check(batch_size: int, mesh: Mesh) -> None:
  n = batch_shards(mesh)
  if batch_size % n or batch_size % jax.process_count():
    raise UserError(
        f"batch_size={batch_size} is not divisible by the {n} devices of the mesh's "
        f"data x fsdp axes (and {jax.process_count()} processes); set "
        f"--config.batch_size to a multiple of {n * jax.process_count()}.")


def put_batch(local_batch: dict, mesh: Mesh) -> dict:
  """This process's rows of the global batch -> global arrays sharded over the batch axes.

  A value that already is a global array laid out so (a batch made on device, e.g.
  `gen_jax.data.synthetic`) passes through as it is."""
  sharding = batch_sharding(mesh)

  def put(v):
    if isinstance(v, jax.Array) and v.sharding.is_equivalent_to(sharding, v.ndim):
      return v
    return jax.make_array_from_process_local_data(sharding, np.asarray(v))
  return {k: put(v) for k, v in local_batch.items()}
