"""The jitted train and eval steps: pure functions of (state, batch).

    train_step = make_train_step(setup)      # jax.jit with in/out shardings, state donated
    state, metrics = train_step(state, batch)
    eval_step = make_eval_step(setup)
    sums = eval_step(state.params, batch)    # `mtx.model.loss.field_sums`, added up over
                                             # the eval set, then `field_means`

Gradient accumulation (train.grad_accum_steps = A) scans over A micro-batches
inside one call and adds their gradients. Each micro-batch's summed loss is
divided by the whole batch's per-field counts, so the summed gradient is exactly
the gradient of the full batch's loss (the sum over fields of each field's mean
cross-entropy, `mtx.model.loss`), whatever A is. Micro-batch j takes rows
j, j + A, j + 2A...: each device keeps its own rows, no data moves.

Dropout: the step's key is `fold_in(rng, step)`, reseeding every dropout
stream of the model (each stream draws its own key from it), so a run resumed
from a checkpoint draws exactly the numbers a straight run draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mtx.model.loss import SUM_KINDS, field_means, field_sums, field_weights
from mtx.train import sharding
from mtx.train.state import TrainSetup, TrainState

MODEL_INPUTS = ("positions", "segment_ids")


def _forward(setup: TrainSetup, params, batch: dict, *, deterministic: bool, key=None):
  model = setup.model(params)
  if key is not None:
    nnx.reseed(model, dropout=key)
  logits, _ = model(
    batch["inputs"],
    deterministic=deterministic,
    **{k: batch[k] for k in MODEL_INPUTS if k in batch},
  )
  return logits


def _batch_sums(setup: TrainSetup, logits, batch: dict) -> dict[str, jax.Array]:
  return field_sums(
    logits,
    batch["targets"],
    batch["mask"],
    setup.codec.field_mask_table(),
    setup.codec.fields.names,
  )


def _micro_batches(batch: dict, accum: int) -> dict:
  """(B, ...) -> (A, B / A, ...), micro-batch j holding rows j, j + A, ..."""

  def split(x):
    x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:])
    return jnp.moveaxis(x, 1, 0)

  return jax.tree.map(split, batch)


def make_train_step(setup: TrainSetup):
  """The jitted step: (state, batch) -> (new state, metrics); the state is donated."""
  names = setup.codec.fields.names
  table = setup.codec.field_mask_table()
  accum = int(setup.config.train.grad_accum_steps)
  batch_sharding = sharding.batch_sharding(setup.mesh)

  def train_step(state: TrainState, batch: dict):
    key = jax.random.fold_in(
      jax.random.wrap_key_data(state.rng, impl=setup.config.train.rng_impl), state.step
    )
    counts = field_weights(batch["targets"], batch["mask"], table).sum(axis=(0, 1))  # (F,)

    def micro_loss(params, micro, micro_key):
      logits = _forward(setup, params, micro, deterministic=False, key=micro_key)
      sums = _batch_sums(setup, logits, micro)
      return field_means(sums, names, counts)["loss"], sums

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
    if accum == 1:
      (_, sums), grads = grad_fn(state.params, batch, key)
    else:
      micros = _micro_batches(batch, accum)

      def body(carry, xs):
        grads_sum, sums_sum = carry
        micro, index = xs
        micro = jax.lax.with_sharding_constraint(micro, batch_sharding)
        (_, sums), grads = grad_fn(state.params, micro, jax.random.fold_in(key, index))
        return (
          jax.tree.map(jnp.add, grads_sum, grads),
          jax.tree.map(jnp.add, sums_sum, sums),
        ), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      zero_sums = {f"{kind}/{n}": jnp.zeros((), jnp.float32) for kind in SUM_KINDS for n in names}
      (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums), (micros, jnp.arange(accum)))
    updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = field_means(sums, names)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["param_norm"] = optax.tree.norm(params)  # inf once an update blew up
    metrics["learning_rate"] = jnp.asarray(setup.schedule(state.step), jnp.float32)
    metrics["tokens"] = batch["mask"].sum().astype(jnp.float32)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(
    train_step,
    in_shardings=(setup.state_shardings, batch_sharding),
    out_shardings=(setup.state_shardings, sharding.replicated(setup.mesh)),
    donate_argnums=(0,),
  )


def make_eval_step(setup: TrainSetup):
  """The jitted eval step: (params, batch) -> `field_sums` of the batch."""

  def eval_step(params, batch: dict):
    logits = _forward(setup, params, batch, deterministic=True)
    return _batch_sums(setup, logits, batch)

  return jax.jit(
    eval_step,
    in_shardings=(setup.state_shardings.params, sharding.batch_sharding(setup.mesh)),
    out_shardings=sharding.replicated(setup.mesh),
  )
