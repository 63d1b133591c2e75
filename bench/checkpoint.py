"""What verifying checkpoints costs: the digest of every array, and the blocking part of
an async save with and without it.

    python -m bench.checkpoint --data_dir=data        # a prepared jsb_chorales/mmt

For the tiny model and an MMT-size one (6 layers, 512 wide: about 20M parameters, 232 MiB
of state with Adam's moments), it times `mtx.train.digest.tree_digests` over the whole
state (the step's extra work at a save) and the `Checkpoints.save` call that the training
loop waits for (async checkpointing: the host copy, the digest, the hand-off to Orbax),
median of 3 saves, with digests and with the digest function replaced by an empty one in
the same process. docs/benchmarks.md holds the runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

SIZES = {"tiny": {}, "mmt": dict(num_layers=6, embed_dim=512, num_heads=8)}


def _config(data_dir: str, model: dict):
  from configs import base

  config = base.get_config()
  config.data.update(dataset="jsb_chorales", representation="mmt", data_dir=data_dir)
  config.model.update(dropout_rate=0.0, **model)
  config.train.update(async_checkpointing=True)
  return config


def measure(data_dir: str, model: dict, *, digests: bool, repeats: int = 3) -> dict:
  import jax

  import mtx.train.checkpoint as checkpoint
  from mtx.train import sharding
  from mtx.train.data import PreparedData, train_iterator
  from mtx.train.digest import tree_digests
  from mtx.train.state import TrainSetup

  config = _config(data_dir, model)
  data = PreparedData(config.data)
  setup = TrainSetup.create(config, data.codec, sharding.make_mesh((1, 1, 1)))
  state = setup.init()
  jax.block_until_ready(state)
  out = {
    "parameters (M)": sum(x.size for x in jax.tree.leaves(state.params)) / 1e6,
    "state (MiB)": sum(x.nbytes for x in jax.tree.leaves(state)) / 2**20,
  }
  tree_digests(state)
  start = time.perf_counter()
  for _ in range(repeats):
    tree_digests(state)
  out["digest (ms)"] = (time.perf_counter() - start) / repeats * 1e3
  original = checkpoint.tree_digests
  if not digests:
    checkpoint.tree_digests = lambda tree: {}
  iterator = train_iterator(data, config)
  try:
    with tempfile.TemporaryDirectory() as folder:
      saver = checkpoint.Checkpoints(folder, config.train)
      times = []
      for step in range(1, repeats + 1):
        start = time.perf_counter()
        saver.save(step, state, iterator, {"loss": 1.0})
        times.append(time.perf_counter() - start)
        saver.wait()
      saver.close()
  finally:
    checkpoint.tree_digests = original
    iterator.close()
  out["save call (ms)"] = statistics.median(times) * 1e3
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True, help="holds jsb_chorales/mmt")
  parser.add_argument("--sizes", default="tiny,mmt")
  args = parser.parse_args(argv)
  print(
    "| model | parameters (M) | state (MiB) | digest (ms) | save call with digests (ms) "
    "| without (ms) |"
  )
  print("|---|---|---|---|---|---|")
  for name in args.sizes.split(","):
    with_digests = measure(args.data_dir, SIZES[name], digests=True)
    without = measure(args.data_dir, SIZES[name], digests=False)
    print(
      f"| {name} | {with_digests['parameters (M)']:.2f} | {with_digests['state (MiB)']:.1f} "
      f"| {with_digests['digest (ms)']:.1f} | {with_digests['save call (ms)']:.0f} "
      f"| {without['save call (ms)']:.0f} |",
      flush=True,
    )


if __name__ == "__main__":
  main()
