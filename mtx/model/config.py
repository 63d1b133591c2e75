"""The model's hyper-parameters, read once from `config.model` and checked as they are.

    model_config = ModelConfig.from_config(config.model)   # raises ConfigError if bad

`config.model` is an `ml_collections.ConfigDict` (configs/model_*.py) or any object with
these attributes. Two keys may be missing from configs written before they existed:
`attention_dropout_rate` (then `dropout_rate`) and `attention_block_size` (then
`DEFAULT_ATTENTION_BLOCK_SIZE`). A missing required key raises AttributeError, which
`mtx.train.config` turns into a ConfigError naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from mtx.errors import ConfigError
from mtx.model.embeddings import POSITION_EMBEDDINGS

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Queries per attention block when a config does not say (measured: docs/benchmarks.md).
DEFAULT_ATTENTION_BLOCK_SIZE = 256
# Model keys that change how, not what, the model computes (same parameters, same values):
# a run may resume, or be sampled, with another value.
LAYOUT_ONLY_KEYS = frozenset({"attention_block_size"})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The decoder's shape and settings (decoder.py says what each one does).

  Values are normalized as the model uses them: sizes are ints, `attention_dropout_rate`
  None becomes `dropout_rate`, `attention_block_size` 0 or None becomes None (the whole
  L x L at once).
  """

  num_layers: int
  embed_dim: int
  num_heads: int
  mlp_ratio: float
  dropout_rate: float
  relative: bool
  max_relative_distance: int
  position_embedding: str
  max_seq_len: int
  dtype: str
  attention_dropout_rate: float | None = None
  attention_block_size: int | None = DEFAULT_ATTENTION_BLOCK_SIZE

  @classmethod
  def from_config(cls, config: Any) -> ModelConfig:
    """A checked `ModelConfig` from an ml_collections `config.model` (or itself)."""
    if isinstance(config, ModelConfig):
      return config
    optional = {
      f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }
    values = {
      f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.name not in optional
    }
    values.update({name: getattr(config, name, default) for name, default in optional.items()})
    return cls(**values)

  def __post_init__(self):
    for name in ("num_layers", "embed_dim", "num_heads"):
      if int(getattr(self, name)) <= 0:
        raise ConfigError(f"model.{name} must be positive; got {getattr(self, name)}")
    if self.embed_dim % self.num_heads:
      raise ConfigError(
        f"model.embed_dim ({self.embed_dim}) must be a multiple of "
        f"model.num_heads ({self.num_heads})"
      )
    if self.mlp_ratio <= 0 or self.mlp_dim <= 0:
      raise ConfigError(f"model.mlp_ratio must be positive; got {self.mlp_ratio}")
    if self.position_embedding not in POSITION_EMBEDDINGS:
      raise ConfigError(
        f"model.position_embedding must be one of {POSITION_EMBEDDINGS}; "
        f"got {self.position_embedding!r}"
      )
    if self.position_embedding == "learned" and self.max_seq_len <= 0:
      raise ConfigError("model.max_seq_len must be positive for learned positions")
    if self.relative and self.max_relative_distance <= 0:
      raise ConfigError("model.max_relative_distance must be positive for relative attention")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ConfigError(f"model.dropout_rate must be in [0, 1); got {self.dropout_rate}")
    size = self.attention_block_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
      raise ConfigError(
        "model.attention_block_size must be a whole number >= 0 (0 or None: "
        f"the full attention); got {size!r}"
      )
    if self.dtype not in COMPUTE_DTYPES:
      raise ConfigError(
        f"model dtype must be one of {', '.join(COMPUTE_DTYPES)}; got {self.dtype!r}"
      )
    normalized = {
      name: int(getattr(self, name))
      for name in ("num_layers", "embed_dim", "num_heads", "max_relative_distance", "max_seq_len")
    }
    normalized["relative"] = bool(self.relative)
    normalized["attention_block_size"] = int(size) if size else None
    if self.attention_dropout_rate is None:
      normalized["attention_dropout_rate"] = self.dropout_rate
    for name, value in normalized.items():
      object.__setattr__(self, name, value)  # frozen: set once, here

  @property
  def mlp_dim(self) -> int:
    """Width of the MLP: mlp_ratio * embed_dim, rounded (ratios like 1024/384 are inexact)."""
    return int(round(self.mlp_ratio * self.embed_dim))

  @property
  def compute_dtype(self):
    """The jnp dtype activations and matmuls run in."""
    return COMPUTE_DTYPES[self.dtype]


def check_config(config: Any) -> None:
  """Raise ConfigError naming the first bad hyper-parameter of `config.model`."""
  ModelConfig.from_config(config)
