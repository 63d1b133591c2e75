"""Learned-table analysis: cosine similarity, the model's tables, the octave score."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from configs import model_tiny
from mtx.errors import ConfigError
from mtx.evaluate.embeddings import cosine_similarity, field_tables, octave_score
from mtx.model.decoder import Decoder
from mtx.representation import get_codec


def test_cosine_similarity_is_the_normalized_gram_matrix():
  table = np.array([[3.0, 4.0], [6.0, 8.0], [-4.0, 3.0], [0.0, 0.0]])
  np.testing.assert_allclose(
    cosine_similarity(table), [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], atol=1e-12
  )


def test_a_table_of_pitch_classes_scores_high_and_a_random_one_about_zero():
  rng = np.random.default_rng(0)
  classes = rng.standard_normal((12, 256))
  pitch = np.arange(128)
  octaves = np.zeros((129, 256))
  octaves[1:] = classes[pitch % 12] + 0.3 * rng.standard_normal((128, 256))
  octaves[0] = rng.standard_normal(256)  # "none": outside the codes scored
  structured = octave_score(cosine_similarity(octaves))
  assert structured["score"] > 0.5
  assert structured["num_octave_pairs"] == 2 * (128 - 12)
  assert structured["num_other_pairs"] == 128 * 127 - 2 * (128 - 12)
  random = octave_score(cosine_similarity(rng.standard_normal((129, 256))))
  assert abs(random["score"]) < 0.05


def test_the_score_reads_only_the_given_codes():
  similarity = np.zeros((20, 20))
  similarity[2, 14] = similarity[14, 2] = 1.0  # codes 2 and 14: an octave apart
  similarity[0, 12] = similarity[12, 0] = 5.0  # outside codes 1..19
  result = octave_score(similarity, first_code=1, last_code=19)
  assert result["num_octave_pairs"] == 2 * (19 - 12)
  assert result["octave_mean"] == pytest.approx(2.0 / 14)
  assert result["other_mean"] == 0.0
  with pytest.raises(ValueError, match="octave"):
    octave_score(similarity, first_code=1, last_code=12)
  with pytest.raises(ValueError, match=r"\(V, V\)"):
    octave_score(np.zeros((4, 5)))


def test_the_models_tables_run_through_the_analysis():
  codec = get_codec("mmt", max_beat=64)
  config = model_tiny.get_config()
  config.update(num_layers=1, embed_dim=32, num_heads=2)
  with nnx.use_eager_sharding(False):
    model = Decoder(config, codec.fields.sizes, rngs=nnx.Rngs(0))
  tables = field_tables(model, codec.fields.names)
  assert list(tables) == list(codec.fields.names)
  for (embedding, head), size in zip(tables.values(), codec.fields.sizes):
    assert embedding.shape == head.shape == (size, 32)
    assert cosine_similarity(embedding).shape == (size, size)
  pitch_embedding, pitch_head = tables["pitch"]
  np.testing.assert_array_equal(pitch_embedding, model.embeddings.tables[3].embedding[...])
  np.testing.assert_array_equal(pitch_head, np.asarray(model.heads.heads[3].kernel[...]).T)
  score = octave_score(cosine_similarity(pitch_embedding))
  assert np.isfinite(score["score"])
  # The parameter state, and its pure-dict form, give the same tables.
  state = nnx.state(model, nnx.Param)
  for params in (state, nnx.to_pure_dict(state)):
    for name, (embedding, head) in field_tables(params, codec.fields.names).items():
      np.testing.assert_array_equal(embedding, tables[name][0])
      np.testing.assert_array_equal(head, tables[name][1])
  with pytest.raises(ConfigError, match="6 field tables"):
    field_tables(model, ("event",))
