"""Sharded training equals one device, and every parameter sits where the rules say.

The runs happen in a subprocess with 8 CPU devices
(--xla_force_host_platform_device_count=8), the same program under each mesh.
Tolerance: the losses of 4 steps agree to 2e-5 relative. Sharded reductions
add in another order than one device does (float32 rounding); dropout's bits
do not depend on the sharding (jax's partitionable threefry).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mtx.train.sharding import LOGICAL_AXIS_RULES
from tests.train.helpers import REPO, cli_env

STEPS = 4
ONE_DEVICE = "1,1,1"
MESHES = {
  "data": "8,1,1",
  "fsdp x data": "2,4,1",
  "tensor x data": "4,1,2",
  "data x fsdp x tensor": "2,2,2",
}


@pytest.fixture(scope="module")
def runs(prepared_dir):
  completed = subprocess.run(
    [
      sys.executable,
      "-m",
      "tests.train.sharded_run",
      str(prepared_dir),
      str(STEPS),
      ONE_DEVICE,
      *MESHES.values(),
    ],
    cwd=REPO,
    env=cli_env(devices=8),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(MESHES))
def test_sharded_losses_equal_one_device(runs, name):
  reference = runs[ONE_DEVICE]["losses"]
  losses = runs[MESHES[name]]["losses"]
  assert losses == pytest.approx(reference, rel=2e-5)
  assert losses[-1] < losses[0]
  for param, info in runs[MESHES[name]]["params"].items():
    assert info["sum"] == pytest.approx(
      runs[ONE_DEVICE]["params"][param]["sum"], rel=1e-4, abs=1e-4
    ), param


def _expected_spec(param: str, mesh_shape: dict) -> list:
  """The mesh axes each parameter should be split over, written out from the rule table's
  intent for this model's layout (independent of the code computing it)."""
  del mesh_shape
  rules = dict(LOGICAL_AXIS_RULES)
  param = param.removesuffix(".value")
  if param.endswith("['kernel']") and "['mlp']['up']" in param:
    logical = ("embed", "mlp")
  elif param.endswith("['kernel']") and "['mlp']['down']" in param:
    logical = ("mlp", "embed")
  elif param.endswith("['bias']") and "['mlp']['up']" in param:
    logical = ("mlp",)
  elif (
    "['attention']['query']" in param
    or "['attention']['key']" in param
    or "['attention']['value']" in param
  ):
    logical = ("embed", "heads", "kv")
  elif "['attention']['out']" in param:
    logical = ("heads", "kv", "embed")
  elif "rel_embedding" in param:
    logical = ("relpos", "heads", "kv")
  elif "['heads']" in param and param.endswith("['kernel']"):
    logical = ("embed", "vocab")
  elif "['heads']" in param:
    logical = ("vocab",)
  elif "['embeddings']" in param:
    logical = ("vocab", "embed")
  else:  # norms, the MLP's output bias
    logical = ("embed",)
  return [
    rules[name] if not isinstance(rules[name], tuple) else list(rules[name]) for name in logical
  ]


@pytest.mark.parametrize("name", list(MESHES))
def test_every_parameter_is_split_as_the_rules_say(runs, name):
  data, fsdp, tensor = (int(x) for x in MESHES[name].split(","))
  sizes = {"data": data, "fsdp": fsdp, "tensor": tensor, None: 1}
  for param, info in runs[MESHES[name]]["params"].items():
    expected = _expected_spec(param, sizes)
    assert info["spec"] == expected, param
    for dim, shard_dim, axis in zip(info["shape"], info["shard_shape"], expected):
      assert shard_dim == dim // sizes[axis], param  # each device holds its slice only
  # Adam's moments follow their parameters.
  assert any("fsdp" in spec or "tensor" in spec for spec in runs[MESHES[name]]["mu_specs"]) or (
    fsdp == 1 and tensor == 1
  )
