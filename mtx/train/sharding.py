"""The device mesh and the one table mapping the model's logical axes onto it.

The model names every parameter axis (`embed`, `heads`, `kv`, `mlp`, `vocab`,
`max_len`, `relpos`); this module alone decides where those go, as MaxText's
`logical_axis_rules` and t5x's partitioning rules do:

    batch   -> (data, fsdp)   batches split over both data-parallel axes
    embed   -> fsdp           parameters and optimizer state split over fsdp (ZeRO-3 style)
    heads   -> tensor         attention heads split over tensor (Megatron style)
    mlp     -> tensor         MLP hidden units likewise
    kv, vocab, max_len, relpos -> replicated

Field vocabularies are small and of odd sizes (5, 13, 33...), so `vocab` is
not split. Changing the parallelism is a config change (`mesh.data`,
`mesh.fsdp`, `mesh.tensor`); the step is the same program.
"""

from __future__ import annotations

import math
from typing import Any

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from mtx.errors import ConfigError
from mtx.train.config import MESH_AXES

BATCH_AXES = ("data", "fsdp")
LOGICAL_AXIS_RULES = (
  ("batch", BATCH_AXES),
  ("embed", "fsdp"),
  ("heads", "tensor"),
  ("mlp", "tensor"),
  ("kv", None),
  ("vocab", None),
  ("max_len", None),
  ("relpos", None),
)


def make_mesh(shape: tuple[int, int, int], devices=None) -> jax.sharding.Mesh:
  """A (data, fsdp, tensor) mesh over `devices` (default: all), axes of Auto type so
  XLA propagates shardings between the annotated inputs and outputs."""
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if devices is None:
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto)
  return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def logical_to_mesh_spec(logical: tuple) -> PartitionSpec:
  """PartitionSpec over mesh axes for a tuple of logical axis names."""
  rules = dict(LOGICAL_AXIS_RULES)
  axes = []
  for name in logical:
    if name is not None and name not in rules:
      raise ConfigError(
        f"logical axis {name!r} has no rule in mtx/train/sharding.py's LOGICAL_AXIS_RULES; add one"
      )
    axes.append(None if name is None else rules[name])
  return PartitionSpec(*axes)


def state_specs(abstract_state: Any) -> Any:
  """The mesh PartitionSpec of every variable of an `nnx.State`, from its logical names
  (variables without names are replicated)."""
  used = set()
  for variable in jax.tree.leaves(abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable)):
    used.update(n for n in (variable.get_metadata().get("out_sharding") or ()) if n)
  logical_to_mesh_spec(tuple(sorted(used)))  # every name has a rule
  with nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
    return nnx.get_partition_spec(abstract_state)


def _axis_size(mesh: jax.sharding.Mesh, entry) -> int:
  if entry is None:
    return 1
  names = entry if isinstance(entry, tuple) else (entry,)
  return math.prod(mesh.shape[n] for n in names)


def check_divisible(abstract_state: Any, specs: Any, mesh: jax.sharding.Mesh) -> None:
  """ConfigError naming the first parameter whose split axis does not divide evenly."""
  flat_values = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
  flat_specs = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
  for (path, value), spec in zip(flat_values, flat_specs):
    for dim, entry in zip(value.shape, spec):
      ways = _axis_size(mesh, entry)
      if dim % ways:
        name = jax.tree_util.keystr(path)
        raise ConfigError(
          f"parameter {name} of shape {tuple(value.shape)} cannot be split "
          f"{ways} ways over mesh axis {entry} (dimension {dim}); change "
          f"mesh.fsdp/mesh.tensor or the model's sizes"
        )


def named(mesh: jax.sharding.Mesh, specs: Any) -> Any:
  """NamedSharding for every PartitionSpec in a tree."""
  return jax.tree.map(
    lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
  )


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Batches (B, ...): rows split over (data, fsdp), the rest whole."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
