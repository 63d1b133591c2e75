"""Sampling from a briefly trained tiny model: cache equals no cache, modes keep their
promises, every sample is a valid MIDI file."""

from __future__ import annotations

import jax
import miditoolkit
import numpy as np
import pytest

from mtx.representation import mmt
from mtx.sample.decode import SamplingOptions, make_generate
from mtx.sample.grammar import grammar_for
from mtx.sample.primer import instrument_codes, mmt_header, primer_rows, start_rows

MAX_LENGTH = 48


def _generate(
  run,
  primer,
  *,
  batch,
  seed,
  use_cache,
  temperature=1.0,
  top_p=1.0,
  instruments=None,
  max_length=MAX_LENGTH,
):
  options = SamplingOptions.per_field(run.codec.n_fields, temperature=temperature, top_p=top_p)
  generate = make_generate(
    run.setup.model,
    grammar_for(run.codec, instruments=instruments),
    options,
    max_length=max_length,
    use_cache=use_cache,
  )
  primers = np.broadcast_to(primer, (batch,) + primer.shape)
  tokens, lengths = jax.device_get(generate(run.params, primers, jax.random.key(seed)))
  return [tokens[i, : lengths[i]] for i in range(batch)]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_sampling_equals_uncached_sampling_token_for_token(
  trained_run, music21_chorales, temperature
):
  for primer in (
    start_rows(trained_run.codec),
    primer_rows(trained_run.codec, music21_chorales[20], notes=6),
  ):
    cached = _generate(
      trained_run, primer, batch=3, seed=5, use_cache=True, temperature=temperature
    )
    uncached = _generate(
      trained_run, primer, batch=3, seed=5, use_cache=False, temperature=temperature
    )
    for a, b in zip(cached, uncached):
      np.testing.assert_array_equal(a, b)
    generated = [a[len(primer) :] for a in cached]
    assert all((g[:, mmt.TYPE] == mmt.NOTE).any() for g in generated)  # real new notes


def test_continuation_keeps_the_primer_exactly(trained_run, music21_chorales):
  codec = trained_run.codec
  primer = primer_rows(codec, music21_chorales[21], beats=4)
  full = codec.encode(music21_chorales[21])
  notes = primer[primer[:, mmt.TYPE] == mmt.NOTE]
  assert len(notes) and (notes[:, mmt.BEAT] - 1 < 4).all()
  assert (full[full[:, mmt.TYPE] == mmt.NOTE][: len(notes)] == notes).all()
  for sample in _generate(trained_run, primer, batch=4, seed=1, use_cache=True):
    np.testing.assert_array_equal(sample[: len(primer)], primer)
    decoded = codec.decode(sample, strict=True)
    primer_notes = {(n.start, n.pitch) for i in codec.decode(primer).instruments for n in i.notes}
    sample_notes = {(n.start, n.pitch) for i in decoded.instruments for n in i.notes}
    assert primer_notes <= sample_notes


def test_instrument_informed_samples_use_only_the_given_instruments(trained_run):
  codes = instrument_codes(["piano", "violin", "42"])  # 42: cello's GM program
  assert len(codes) == 3
  header = mmt_header(trained_run.codec, codes)
  for sample in _generate(trained_run, header, batch=8, seed=2, use_cache=True):
    np.testing.assert_array_equal(sample[: len(header)], header)
    notes = sample[sample[:, mmt.TYPE] == mmt.NOTE]
    assert set(notes[:, mmt.INSTRUMENT_FIELD].tolist()) <= set(codes)


def test_a_hundred_samples_are_all_valid_midi_files(trained_run, tmp_path):
  samples = _generate(
    trained_run, start_rows(trained_run.codec), batch=100, seed=3, use_cache=True, top_p=0.95
  )
  assert len(samples) == 100
  with_notes = sum((s[:, mmt.TYPE] == mmt.NOTE).any() for s in samples)
  assert with_notes == 100  # the grammar allows end-of-song only after a note
  for i, sample in enumerate(samples):
    midi = trained_run.codec.decode(sample, strict=True)
    path = tmp_path / f"{i}.mid"
    midi.dump(str(path))
    back = miditoolkit.MidiFile(str(path))
    # Every note row is a note of the file (repeats are written as layers, not merged).
    assert sum(len(t.notes) for t in back.instruments) == int(
      (sample[:, mmt.TYPE] == mmt.NOTE).sum()
    )


def _note_beats(sample):
  return sample[sample[:, mmt.TYPE] == mmt.NOTE, mmt.BEAT].astype(int) - 1


def test_the_default_settings_never_run_away_over_a_hundred_samples(trained_run):
  from mtx.sample.decode import options_for, sample_defaults
  from mtx.sample.restore import sampling_limits

  limits = sampling_limits(trained_run)
  assert limits.source in ("run", "dataset")
  assert limits.max_time_jump > 0 and limits.max_onset_notes > 0
  assert limits.max_length > limits.window == trained_run.config.data.seq_len
  options = options_for(trained_run.codec.fields.sizes, **sample_defaults(trained_run.config))
  grammar = grammar_for(
    trained_run.codec,
    max_time_jump=limits.max_time_jump,
    max_first_time=limits.max_first_time,
    max_onset_notes=limits.max_onset_notes,
  )
  generate = make_generate(
    trained_run.setup.model, grammar, options, max_length=limits.max_length, window=limits.window
  )
  primer = start_rows(trained_run.codec)
  tokens, lengths = jax.device_get(
    generate(trained_run.params, np.broadcast_to(primer, (100,) + primer.shape), jax.random.key(9))
  )
  assert tokens.shape[1] == limits.max_length
  for sample in (tokens[i, : lengths[i]] for i in range(100)):
    trained_run.codec.decode(sample, strict=True)
    beats = _note_beats(sample)
    assert len(beats) and beats[0] <= limits.max_first_time
    assert (np.diff(beats) >= 0).all() and (np.diff(beats) <= limits.max_time_jump).all()
    onsets = sample[sample[:, mmt.TYPE] == mmt.NOTE][:, [mmt.BEAT, mmt.POSITION]]
    assert np.unique(onsets, axis=0, return_counts=True)[1].max() <= limits.max_onset_notes


def test_the_limits_come_from_the_run_else_its_dataset_else_none(trained_run, tmp_path):
  import dataclasses

  import ml_collections

  from mtx.errors import ConfigError
  from mtx.evaluate.evaluator import open_split
  from mtx.sample.grammar import time_limits
  from mtx.sample.restore import WINDOWS_PER_SAMPLE, data_limits, sampling_limits
  from mtx.train.data import PreparedData

  songs = open_split(trained_run, trained_run.config.data.train_split, None, 0).tokens
  from_data = time_limits(trained_run.codec, songs)
  assert from_data["longest_song"] == max(len(s) for s in songs)
  # What mtx.train.loop.run_record saves: the same, from the prepared dataset.
  assert (
    data_limits(PreparedData(trained_run.config.data), trained_run.config.data.train_split)
    == from_data
  )
  saved = dataclasses.replace(trained_run, data_limits={**from_data, "max_time_jump": 3})
  limits = sampling_limits(saved)
  assert (limits.source, limits.max_time_jump, limits.max_length) == (
    "run",
    3,
    from_data["longest_song"],
  )
  assert limits.max_silence == from_data["max_silence"]
  # --max_time_jump=0 turns the time limits off, the silence limit with them.
  assert sampling_limits(saved, max_time_jump=0, window=16, max_length=99) == dataclasses.replace(
    limits, max_time_jump=0, max_first_time=0, window=16, max_length=99, max_silence=None
  )
  # A run saved before the silence limit existed reads it from its dataset.
  older = dataclasses.replace(
    trained_run, data_limits={k: v for k, v in from_data.items() if k != "max_silence"}
  )
  assert sampling_limits(older).max_silence == from_data["max_silence"]

  config = ml_collections.ConfigDict(trained_run.config.to_dict())
  config.data.data_dir = str(tmp_path)  # the dataset is gone
  gone = dataclasses.replace(
    trained_run, config=config, data_limits=None, dataset=str(tmp_path / "a" / "b" / "c")
  )
  warnings = []
  limits = sampling_limits(gone, warn=warnings.append)
  assert (limits.source, limits.max_time_jump) == ("none", 0) and len(warnings) == 1
  assert limits.max_length == WINDOWS_PER_SAMPLE * config.data.seq_len

  # Learned positions bound the window (views re-encode at positions 0..window-1), not
  # the sample's length.
  config.model.update(position_embedding="learned", max_seq_len=100)
  learned = dataclasses.replace(gone, config=config)
  assert sampling_limits(learned, max_time_jump=0, max_length=1000).max_length == 1000
  with pytest.raises(ConfigError, match="learned positions"):
    sampling_limits(learned, window=101)
  with pytest.raises(ConfigError, match="window"):
    sampling_limits(learned, window=1)
