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


def _generate(run, primer, *, batch, seed, use_cache, temperature=1.0, top_p=1.0,
              instruments=None, max_length=MAX_LENGTH):
  options = SamplingOptions.per_field(run.codec.n_fields, temperature=temperature, top_p=top_p)
  generate = make_generate(run.setup.model, grammar_for(run.codec, instruments=instruments),
                           options, max_length=max_length, use_cache=use_cache)
  primers = np.broadcast_to(primer, (batch,) + primer.shape)
  tokens, lengths = jax.device_get(generate(run.params, primers, jax.random.key(seed)))
  return [tokens[i, :lengths[i]] for i in range(batch)]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_sampling_equals_uncached_sampling_token_for_token(trained_run, music21_chorales,
                                                                  temperature):
  for primer in (start_rows(trained_run.codec),
                 primer_rows(trained_run.codec, music21_chorales[20], notes=6)):
    cached = _generate(trained_run, primer, batch=3, seed=5, use_cache=True,
                       temperature=temperature)
    uncached = _generate(trained_run, primer, batch=3, seed=5, use_cache=False,
                         temperature=temperature)
    for a, b in zip(cached, uncached):
      np.testing.assert_array_equal(a, b)
    generated = [a[len(primer):] for a in cached]
    assert all((g[:, mmt.TYPE] == mmt.NOTE).any() for g in generated)  # real new notes


def test_continuation_keeps_the_primer_exactly(trained_run, music21_chorales):
  codec = trained_run.codec
  primer = primer_rows(codec, music21_chorales[21], beats=4)
  full = codec.encode(music21_chorales[21])
  notes = primer[primer[:, mmt.TYPE] == mmt.NOTE]
  assert len(notes) and (notes[:, mmt.BEAT] - 1 < 4).all()
  assert (full[full[:, mmt.TYPE] == mmt.NOTE][:len(notes)] == notes).all()
  for sample in _generate(trained_run, primer, batch=4, seed=1, use_cache=True):
    np.testing.assert_array_equal(sample[:len(primer)], primer)
    decoded = codec.decode(sample, strict=True)
    primer_notes = {(n.start, n.pitch) for i in codec.decode(primer).instruments
                    for n in i.notes}
    sample_notes = {(n.start, n.pitch) for i in decoded.instruments for n in i.notes}
    assert primer_notes <= sample_notes


def test_instrument_informed_samples_use_only_the_given_instruments(trained_run):
  codes = instrument_codes(["piano", "violin", "42"])  # 42: cello's GM program
  assert len(codes) == 3
  header = mmt_header(trained_run.codec, codes)
  for sample in _generate(trained_run, header, batch=8, seed=2, use_cache=True):
    np.testing.assert_array_equal(sample[:len(header)], header)
    notes = sample[sample[:, mmt.TYPE] == mmt.NOTE]
    assert set(notes[:, mmt.INSTRUMENT_FIELD].tolist()) <= set(codes)


def test_a_hundred_samples_are_all_valid_midi_files(trained_run, tmp_path):
  samples = _generate(trained_run, start_rows(trained_run.codec), batch=100, seed=3,
                      use_cache=True, top_p=0.95)
  assert len(samples) == 100
  with_notes = sum((s[:, mmt.TYPE] == mmt.NOTE).any() for s in samples)
  assert with_notes == 100  # the grammar allows end-of-song only after a note
  for i, sample in enumerate(samples):
    midi = trained_run.codec.decode(sample, strict=True)
    path = tmp_path / f"{i}.mid"
    midi.dump(str(path))
    back = miditoolkit.MidiFile(str(path))
    # Every note row is a note of the file (repeats are written as layers, not merged).
    assert sum(len(t.notes) for t in back.instruments) == \
        int((sample[:, mmt.TYPE] == mmt.NOTE).sum())
