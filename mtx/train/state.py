"""The train state, created sharded: parameters, optimizer state, step and RNG.

    setup = TrainSetup.create(config, codec, mesh)
    state = setup.init()          # a TrainState (step, params, opt_state, rng), each leaf
                                  # placed by setup.state_shardings (a TrainState too)

The state is a typed pytree (a flax struct dataclass) so that `jax.jit` can
take and donate it; Orbax saves it as the plain dict `as_dict` gives (the
checkpoint layout predates the class). `params` is the model's `nnx.Param`
state, `rng` the raw key data
from which each step's dropout key is folded (so a resumed run draws the same
numbers). The model's other state (its RNG streams) is rebuilt by
`setup.model(params)` and reseeded every step. Parameters are created inside
one jitted function whose outputs are sharded, so no host ever holds them
whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from mtx.model.decoder import Decoder
from mtx.representation.codec import Codec
from mtx.train import sharding
from mtx.train.optimizer import make_optimizer


@struct.dataclass
class TrainState:
  """What a training step changes and a checkpoint keeps (t5x's `TrainState`)."""

  step: Any  # int32 scalar: steps taken
  params: Any  # the model's nnx.Param state
  opt_state: Any  # the optimizer's state (optax)
  rng: Any  # raw key data (uint32) from which each step's dropout key is folded

  def as_dict(self) -> dict:
    """The checkpoint's layout of the state: {"step", "params", "opt_state", "rng"}."""
    return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "rng": self.rng}

  @classmethod
  def from_dict(cls, tree: dict) -> TrainState:
    return cls(
      step=tree["step"], params=tree["params"], opt_state=tree["opt_state"], rng=tree["rng"]
    )


def build_model(model_config: Any, field_sizes, seed: int) -> Decoder:
  """The decoder with unsharded (annotated) parameters; shardings come from the rules."""
  with nnx.use_eager_sharding(False):
    return Decoder(model_config, field_sizes, rngs=nnx.Rngs(params=seed, dropout=seed))


@dataclasses.dataclass(frozen=True)
class TrainSetup:
  """Everything the step needs besides the state; built once per run."""

  config: Any
  codec: Codec
  mesh: jax.sharding.Mesh
  graphdef: Any
  abstract_params: Any
  abstract_rest: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  state_shardings: TrainState  # of NamedShardings

  @classmethod
  def create(cls, config: Any, codec: Codec, mesh: jax.sharding.Mesh) -> TrainSetup:
    field_sizes = codec.fields.sizes
    seed = int(config.seed)
    abstract = nnx.eval_shape(lambda: build_model(config.model, field_sizes, seed))
    graphdef, abstract_params, abstract_rest = nnx.split(abstract, nnx.Param, ...)
    specs = sharding.state_specs(abstract_params)
    sharding.check_divisible(abstract_params, specs, mesh)
    param_shardings = sharding.named(mesh, specs)
    tx, schedule = make_optimizer(config.train)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    replicated = sharding.replicated(mesh)
    opt_shardings = optax.tree_map_params(
      tx, lambda _, s: s, abstract_opt, param_shardings, transform_non_params=lambda _: replicated
    )
    state_shardings = TrainState(
      step=replicated, params=param_shardings, opt_state=opt_shardings, rng=replicated
    )
    return cls(
      config=config,
      codec=codec,
      mesh=mesh,
      graphdef=graphdef,
      abstract_params=abstract_params,
      abstract_rest=abstract_rest,
      tx=tx,
      schedule=schedule,
      state_shardings=state_shardings,
    )

  def base_key(self) -> jax.Array:
    return jax.random.key(int(self.config.seed), impl=self.config.train.rng_impl)

  def init(self) -> TrainState:
    """A fresh state, created sharded."""
    config, field_sizes = self.config, self.codec.fields.sizes

    def init_state():
      model = build_model(config.model, field_sizes, int(config.seed))
      params = nnx.state(model, nnx.Param)
      return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=self.tx.init(params),
        rng=jax.random.key_data(self.base_key()),
      )

    return jax.jit(init_state, out_shardings=self.state_shardings)()

  def abstract_state(self) -> TrainState:
    """Shapes, dtypes and shardings of the state, for restoring a checkpoint into."""
    shapes = jax.eval_shape(self.init)
    return jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
      shapes,
      self.state_shardings,
    )

  def model(self, params: Any) -> Decoder:
    """The decoder holding `params` (traced values inside a jitted function). Its RNG
    streams start as placeholders: the step reseeds them before any dropout."""
    rest = jax.tree.map(_placeholder, self.abstract_rest)
    return nnx.merge(self.graphdef, params, rest)


def _placeholder(abstract: jax.ShapeDtypeStruct) -> jax.Array:
  if jax.dtypes.issubdtype(abstract.dtype, jax.dtypes.prng_key):
    return jax.random.key(0)
  return jnp.zeros(abstract.shape, abstract.dtype)
