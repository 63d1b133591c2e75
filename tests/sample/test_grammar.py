"""The grammars accept every real encoding, and anything drawn under them decodes strictly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtx.representation import get_codec
from mtx.sample.decode import SamplingOptions, filter_logits, sample_row
from mtx.sample.grammar import grammar_for, note_times, time_limits
from mtx.sample.grammar.mmt import longest_silence

CODECS = ("mmt", "performance", "remi")


def _accepts(grammar, codec, songs: list[np.ndarray]) -> None:
  """Feeds real songs row by row (together, in one jitted scan; each padded with
  end-of-song rows, all the grammar allows once a song has ended): each field of each row
  must be allowed, and each song must end."""
  end = np.zeros((1, codec.n_fields), np.int32)
  end[0, 0] = 4 if codec.name == "mmt" else codec.vocab.token("end-of-song")
  length = max(map(len, songs))
  tokens = np.stack([np.concatenate([s, np.repeat(end, length - len(s), 0)]) for s in songs])
  batch = len(songs)

  @jax.jit
  def check(tokens):
    def step(state, row):
      ok = jnp.stack(
        [
          grammar.field_mask(state, f, row)[jnp.arange(batch), row[:, f]]
          for f in range(row.shape[1])
        ],
        -1,
      )
      return grammar.update(state, row), ok

    state, ok = jax.lax.scan(step, grammar.init(batch), jnp.swapaxes(tokens, 0, 1))
    return jnp.swapaxes(ok, 0, 1), grammar.ended(state)

  ok, ended = (np.asarray(x) for x in check(jnp.asarray(tokens, jnp.int32)))
  refused = np.argwhere(~ok)  # (song, row, field) of each refused token
  assert not len(refused), [(tuple(i), tokens[i[0], i[1]].tolist()) for i in refused[:3]]
  assert ended.all()


def _limit_options(limits: dict) -> dict:
  return {k: limits[k] for k in ("max_time_jump", "max_first_time", "max_onset_notes")}


@pytest.mark.parametrize("name", CODECS)
def test_the_grammar_accepts_every_real_encoding(music21_chorales, name):
  codec = get_codec(name)
  songs = [codec.encode(path) for path in music21_chorales[:6]]
  limits = time_limits(codec, songs)
  assert limits["max_time_jump"] > 0 and limits["longest_song"] == max(map(len, songs))
  # Plain, and with the limits of these very songs: each of them stays within them.
  for grammar in (grammar_for(codec), grammar_for(codec, **_limit_options(limits))):
    _accepts(grammar, codec, songs)


def test_mmt_keeps_its_header_in_view():
  codec = get_codec("mmt")
  grammar = grammar_for(codec)
  song = np.array(
    [
      [0, 0, 0, 0, 0, 0],
      [1, 0, 0, 0, 0, 5],
      [1, 0, 0, 0, 0, 9],
      [2, 0, 0, 0, 0, 0],
      [3, 1, 1, 60, 4, 5],
      [3, 2, 1, 62, 4, 9],
    ],
    np.int32,
  )
  state = grammar.init(1)
  kept = []
  for row in song:
    state = grammar.update(state, jnp.asarray(row[None]))
    kept.append(int(grammar.header_rows(state)[0]))
  assert kept == [1, 2, 3, 4, 4, 4]  # start-of-song, two instruments, start-of-notes


def _events(codec, *names) -> np.ndarray:
  """One-field tokens from (kind, value) pairs or bare kinds."""
  vocab = codec.vocab
  ids = [vocab.offset(n[0]) + n[1] if isinstance(n, tuple) else vocab.token(n) for n in names]
  return np.asarray(ids, np.int32)[:, None]


def test_time_limits_measure_jumps_first_times_and_crowded_onsets():
  mmt_codec = get_codec("mmt")
  song = np.array(
    [
      [0, 0, 0, 0, 0, 0],
      [1, 0, 0, 0, 0, 1],
      [2, 0, 0, 0, 0, 0],
      [3, 3, 1, 60, 4, 1],
      [3, 3, 1, 64, 4, 1],
      [3, 3, 1, 67, 4, 1],
      [3, 4, 5, 60, 4, 1],
      [3, 9, 1, 62, 4, 1],
      [4, 0, 0, 0, 0, 0],
    ],
    np.int32,
  )
  limits = time_limits(mmt_codec, [song, song[:5]])
  # Silence: the chord at beat 2 (codes 3, 1) lasts duration code 4 (4 positions), so it
  # ends at 2 * 12 + 4 = 28; the next note starts at 3 * 12 + 4 = 40: 12 positions of rest;
  # that note (4 positions) ends at 44, the next starts at 8 * 12 = 96: 52 positions.
  assert longest_silence(mmt_codec, song) == 52
  assert limits == {
    "max_time_jump": 5,
    "max_first_time": 2,
    "max_onset_notes": 3,
    "longest_song": 9,
    "songs": 2,
    "max_silence": 52,
  }
  # The 99th percentile of the songs' longest silences: one long rest among 200 songs
  # does not set the limit.
  many = [song[:5]] * 199 + [song]
  assert time_limits(mmt_codec, many)["max_silence"] == 0
  performance = get_codec("performance")
  song = _events(
    performance,
    "start-of-song",
    ("time-shift", 49),
    ("velocity", 3),
    ("note-on", 60),
    ("time-shift", 99),
    ("time-shift", 29),
    ("note-off", 60),
    "end-of-song",
  )
  assert note_times(performance, song).tolist() == [50, 180]
  assert time_limits(performance, [song])["max_time_jump"] == 130
  remi = get_codec("remi")
  note = [("program", 0), ("pitch", 20), ("velocity", 3), ("duration", 2)]
  song = _events(
    remi,
    "start-of-song",
    ("bar", 0),
    ("position", 0),
    *note,
    ("bar", 0),
    ("bar", 0),
    ("bar", 0),
    ("position", 4),
    *note,
    "end-of-song",
  )
  assert note_times(remi, song).tolist() == [1, 4]
  assert {k: time_limits(remi, [song])[k] for k in ("max_time_jump", "max_first_time")} == {
    "max_time_jump": 3,
    "max_first_time": 1,
  }


LIMITS = {
  "mmt": dict(max_time_jump=2, max_first_time=1, max_onset_notes=3, max_silence=6),
  "performance": dict(max_time_jump=30, max_first_time=10),
  "remi": dict(max_time_jump=1, max_first_time=1),
}


@pytest.mark.parametrize("limited", [False, True])
@pytest.mark.parametrize("name", CODECS)
def test_rows_drawn_from_random_logits_under_the_grammar_decode_strictly(name, limited):
  codec = get_codec(name)
  limits = LIMITS[name] if limited else {}
  grammar = grammar_for(codec, **limits)
  options = SamplingOptions.per_field(codec.n_fields)
  batch, length = 16, 120

  @jax.jit
  def draw(key):
    def step(carry, t):
      state, lengths = carry
      logits = tuple(
        jax.random.normal(jax.random.fold_in(key, t * 7 + f), (batch, size))
        for f, size in enumerate(codec.fields.sizes)
      )
      row = sample_row(jax.random.fold_in(key, -t - 1), logits, grammar, state, options)
      was_ended = grammar.ended(state)
      state = grammar.update(state, row)
      lengths = jnp.where(grammar.at_boundary(state) & ~was_ended, t + 1, lengths)
      return (state, lengths), row  # the sampler's cut: end-of-song or the last boundary

    (_, lengths), rows = jax.lax.scan(
      step, (grammar.init(batch), jnp.zeros(batch, jnp.int32)), jnp.arange(length)
    )
    return jnp.swapaxes(rows, 0, 1), lengths

  for seed in range(3):
    tokens, lengths = (np.asarray(x) for x in draw(jax.random.key(seed)))
    for sample, stop in zip(tokens, lengths):
      codec.decode(sample[:stop], strict=True)  # raises DecodeError on an undecodable row
      if limited:
        times = note_times(codec, sample[:stop])
        assert len(times) == 0 or times[0] <= limits["max_first_time"]
        assert (np.diff(times) <= limits["max_time_jump"]).all()
        if name == "mmt":
          notes = sample[:stop][sample[:stop, 0] == 3][:, 1:3]
          assert len(notes) == 0 or np.unique(notes, axis=0, return_counts=True)[1].max() <= 3
          assert longest_silence(codec, sample[:stop]) <= limits["max_silence"]


def test_instrument_informed_grammar_keeps_to_the_declared_set():
  codec = get_codec("mmt")
  from mtx.representation import mmt

  grammar = grammar_for(codec, instruments=np.array([1, 41]))
  state = grammar.init(1)
  for row in ([0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]):
    state = grammar.update(state, jnp.asarray([row], jnp.int32))
  note = jnp.asarray([[mmt.NOTE, 0, 0, 0, 0, 0]], jnp.int32)
  allowed = np.flatnonzero(np.asarray(grammar.field_mask(state, mmt.INSTRUMENT_FIELD, note))[0])
  assert allowed.tolist() == [1]  # notes: only what was declared so far
  header = jnp.asarray([[mmt.INSTRUMENT, 0, 0, 0, 0, 0]], jnp.int32)
  allowed = np.flatnonzero(np.asarray(grammar.field_mask(state, mmt.INSTRUMENT_FIELD, header))[0])
  assert allowed.tolist() == [41]  # the header: the given set, ascending


def test_top_k_and_top_p_keep_what_they_promise():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(8, 50)), jnp.float32)
  allowed = jnp.asarray(rng.random((8, 50)) < 0.8)
  kept = np.asarray(
    filter_logits(logits, allowed, temperature=1.0, top_k=5, top_p=1.0) > jnp.finfo(jnp.float32).min
  )
  for b in range(8):
    candidates = np.flatnonzero(np.asarray(allowed[b]))
    best = candidates[np.argsort(-np.asarray(logits[b])[candidates])[:5]]
    assert set(np.flatnonzero(kept[b])) == set(best)
  kept = np.asarray(
    filter_logits(logits, allowed, temperature=1.0, top_k=0, top_p=0.7) > jnp.finfo(jnp.float32).min
  )
  for b in range(8):
    candidates = np.flatnonzero(np.asarray(allowed[b]))
    order = candidates[np.argsort(-np.asarray(logits[b])[candidates])]
    probs = np.exp(np.asarray(logits[b])[order])
    probs /= probs.sum()
    smallest = order[: int(np.searchsorted(np.cumsum(probs), 0.7) + 1)]
    assert set(np.flatnonzero(kept[b])) == set(smallest)


def test_sampling_defaults_are_the_run_configs_over_mmts_and_bad_values_are_refused():
  import ml_collections

  from mtx.errors import ConfigError
  from mtx.evaluate.samples import mmt_evaluation_sampling
  from mtx.sample.decode import DEFAULT_SAMPLING, options_for, sample_defaults

  codec = get_codec("mmt")
  assert sample_defaults(ml_collections.ConfigDict({"seed": 0})) == DEFAULT_SAMPLING
  config = ml_collections.ConfigDict({"sample": {"top_p": 0.9, "temperature": 0.8}})
  assert sample_defaults(config) == {**DEFAULT_SAMPLING, "top_p": 0.9, "temperature": 0.8}
  # The defaults draw as mtx-eval does (MMT's top-k at threshold 0.9 on every field).
  assert options_for(codec.fields.sizes, **DEFAULT_SAMPLING) == mmt_evaluation_sampling(codec)
  sizes = codec.fields.sizes
  assert options_for(sizes, **{**DEFAULT_SAMPLING, "top_k": 5}).top_k == (5,) * 6
  assert options_for(sizes, **{**DEFAULT_SAMPLING, "top_k_fraction": 0}).top_k == (0,) * 6
  for bad, word in (
    ({"temperature": -1.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_k_fraction": 2.0}, "top_k_fraction"),
    ({"top_k": [1, -2]}, "top_k"),
  ):
    with pytest.raises(ConfigError, match=word):
      options_for(sizes, **{**DEFAULT_SAMPLING, **bad})


def test_field_temperatures_set_named_fields_apart_and_survive_the_run_record():
  import json

  import ml_collections

  from configs import jsb_tiny
  from mtx.errors import ConfigError
  from mtx.sample.decode import sample_defaults

  codec = get_codec("mmt")
  config = jsb_tiny.get_config()
  expected = [0.8 if name == "pitch" else 1.0 for name in codec.fields.names]
  assert sample_defaults(config, codec.fields.names)["temperature"] == expected
  # what a checkpoint's run record holds (the config as JSON) samples the same way
  saved = ml_collections.ConfigDict(json.loads(config.to_json()))
  assert sample_defaults(saved, codec.fields.names)["temperature"] == expected
  config.sample.field_temperature = {"velocity": 0.5}
  with pytest.raises(ConfigError, match="velocity, not fields of this representation"):
    sample_defaults(config, codec.fields.names)
