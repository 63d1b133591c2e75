"""Runs the same training steps under several meshes in one 8-device process and prints
JSON: per mesh, the loss of each step, the final parameters' checksum and every
parameter's sharding. Run by test_sharding.py with
XLA_FLAGS=--xla_force_host_platform_device_count=8.

    python -m tests.train.sharded_run DATA_DIR STEPS MESH [MESH ...]   # MESH: data,fsdp,tensor
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np


def main(argv: list[str]) -> None:
  from mtx.train import sharding
  from mtx.train.data import PreparedData, train_iterator
  from mtx.train.state import TrainSetup
  from mtx.train.step import make_train_step
  from tests.train.helpers import small_config

  data_dir, steps, meshes = argv[1], int(argv[2]), argv[3:]
  config = small_config(data_dir, batch_size=8, grad_accum_steps=1)
  config.model.update(num_heads=4, embed_dim=32)
  data = PreparedData(config.data)
  iterator = train_iterator(data, config)
  batches = [next(iterator) for _ in range(steps)]
  iterator.close()
  out = {}
  for spec in meshes:
    shape = tuple(int(x) for x in spec.split(","))
    mesh = sharding.make_mesh(shape, devices=jax.devices()[: int(np.prod(shape))])
    setup = TrainSetup.create(config, data.codec, mesh)
    state = setup.init()
    step = make_train_step(setup)
    batch_sharding = sharding.batch_sharding(mesh)
    losses = []
    for batch in batches:
      state, metrics = step(state, jax.device_put(batch, batch_sharding))
      losses.append(float(metrics["loss"]))
    params = jax.tree_util.tree_flatten_with_path(state.params)[0]
    out[spec] = {
      "losses": losses,
      "params": {
        jax.tree_util.keystr(p): {
          "spec": [
            None if a is None else list(a) if isinstance(a, tuple) else a for a in v.sharding.spec
          ],
          "shape": list(v.shape),
          "shard_shape": list(v.addressable_shards[0].data.shape),
          "devices": len(v.sharding.device_set),
          "sum": float(np.asarray(jax.device_get(v), np.float64).sum()),
        }
        for p, v in params
      },
      "mu_specs": sorted(
        {
          str(leaf.sharding.spec)
          for leaf in jax.tree.leaves(state.opt_state)
          if getattr(leaf, "ndim", 0) >= 2
        }
      ),
    }
  print(json.dumps(out))


if __name__ == "__main__":
  main(sys.argv)
