"""The model's config: built once from `config.model`, checked, normalized, frozen."""

from __future__ import annotations

import dataclasses

import ml_collections
import pytest

from configs import model_mmt, model_music_transformer, model_tiny
from mtx.errors import ConfigError
from mtx.model.config import (
  DEFAULT_ATTENTION_BLOCK_SIZE,
  LAYOUT_ONLY_KEYS,
  ModelConfig,
  check_config,
)


@pytest.mark.parametrize("module", [model_mmt, model_music_transformer, model_tiny])
def test_shipped_configs_read_every_key_as_written(module):
  config = module.get_config()
  model = ModelConfig.from_config(config)
  for name, value in config.items():
    assert getattr(model, name) == value, name
  assert model.mlp_dim == round(config.mlp_ratio * config.embed_dim)


def test_keys_older_configs_lack_get_their_defaults():
  values = model_tiny.get_config().to_dict()
  del values["attention_block_size"], values["attention_dropout_rate"]
  model = ModelConfig.from_config(ml_collections.ConfigDict({**values, "dropout_rate": 0.1}))
  assert model.attention_block_size == DEFAULT_ATTENTION_BLOCK_SIZE
  assert model.attention_dropout_rate == 0.1


@pytest.mark.parametrize("size", [0, None])
def test_block_size_zero_or_none_means_the_whole_attention(size):
  config = model_tiny.get_config()
  config.attention_block_size = size
  assert ModelConfig.from_config(config).attention_block_size is None


def test_model_config_is_frozen_and_passes_through():
  model = ModelConfig.from_config(model_tiny.get_config())
  with pytest.raises(dataclasses.FrozenInstanceError):
    model.embed_dim = 8
  assert ModelConfig.from_config(model) is model
  with pytest.raises(ConfigError, match="num_heads"):
    dataclasses.replace(model, num_heads=3)


def test_a_missing_key_is_named():
  values = model_tiny.get_config().to_dict()
  del values["num_heads"]
  with pytest.raises(AttributeError, match="num_heads"):
    ModelConfig.from_config(ml_collections.ConfigDict(values))


def test_check_config_refuses_a_bad_value_by_name():
  values = {**model_tiny.get_config().to_dict(), "dropout_rate": 1.0}
  with pytest.raises(ConfigError, match="dropout_rate"):
    check_config(ml_collections.ConfigDict(values))


def test_layout_only_keys_are_model_keys():
  """What a checkpoint need not share with the config restoring it."""
  assert LAYOUT_ONLY_KEYS == {"attention_block_size"}
  assert LAYOUT_ONLY_KEYS <= {f.name for f in dataclasses.fields(ModelConfig)}
