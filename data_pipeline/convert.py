"""One corpus file -> its tokens and provenance, or the reason it was skipped.

`convert_file` is the per-file job of every builder, run in a worker process
(or a Beam worker): it reads the MIDI file once, encodes it with the config's
codec and returns a `Converted` example (as the record TFDS stores, when given
a `RecordFormat`: serializing is then the workers' work too, not the main
process'), or a `BadFile` with the reason. It
never raises for a file: a corrupt, empty, truncated or note-less file, one a
representation cannot express, and even an unexpected exception from a parser
all become a `BadFile`, so one file never stops a prepare.

What a song becomes beyond the codec (`CodecSpec`): with `shift_to_first_note`,
the song moves earlier by whole beats so that its first note lies in beat 0 (the
MMT reference's `extract.py`: `notes[:, 0] -= notes[0, 0]`); with `min_notes`, a
song with fewer notes than that (counted as the representation keeps them) is
left out, listed as a `BadFile` with `dropped` set (the reference drops songs of
fewer than 50 notes). mtx's defaults keep leading silence and every song with a
note.

`data_pipeline.pool` runs it over many files on a process pool.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.corpus import CorpusFile, file_problem, md5_of_file
from data_pipeline.records import RecordFormat
from mtx.errors import MidiReadError, MtxError, RepresentationOverflowError
from mtx.representation import Codec, get_codec
from mtx.representation.codec import DecodeReport
from mtx.representation.midi_io import load_note_table
from mtx.representation.notetable import NoteTable, normalize_tempos, normalize_time_signatures
from mtx.representation.quantize import ticks_to_steps


@dataclasses.dataclass(frozen=True)
class CodecSpec:
  """A representation, its options and what is done to each song before and after
  encoding: what a worker needs to turn a file into an example.

  With `overflow="truncate"` (mmt), files that overflow are still converted, and
  flagged `truncated`: the worker first encodes with `overflow="error"` to know.
  shift_to_first_note: move the song earlier by whole beats, its first note into
    beat 0 (`shift_to_first_beat`).
  min_notes: leave out a song with fewer notes than this, as the representation keeps
    them (0: keep every song with a note).
  """

  representation: str
  options: tuple[tuple[str, Any], ...] = ()
  shift_to_first_note: bool = False
  min_notes: int = 0

  @property
  def truncates(self) -> bool:
    return dict(self.options).get("overflow") == "truncate"

  def codec(self) -> Codec:
    return _codec(self.representation, self.options)

  def strict_codec(self) -> Codec:
    """The codec that raises on overflow instead of truncating."""
    if not self.truncates:
      return self.codec()
    return _codec(
      self.representation, tuple((k, "error" if k == "overflow" else v) for k, v in self.options)
    )


@functools.cache
def _codec(representation: str, options: tuple[tuple[str, Any], ...]) -> Codec:
  return get_codec(representation, **dict(options))


@dataclasses.dataclass(frozen=True)
class Converted:
  """A good file: its example key, the example the builder writes (a dict, or
  the serialized `record` when converted with a RecordFormat), its split, and
  whether the codec dropped notes it could not express (overflow="truncate")."""

  key: str
  example: dict | None
  truncated: bool = False
  split: str = ""
  record: bytes = b""


@dataclasses.dataclass(frozen=True)
class BadFile:
  """A skipped file and why: one line of `bad_files.tsv`. `dropped`: a good file the
  preparation leaves out by choice (fewer notes than `min_notes`), not a broken one."""

  path: str
  reason: str
  dropped: bool = False


TOO_FEW_NOTES = "TooFewNotes"


def convert_file(
  file: CorpusFile, spec: CodecSpec, record_format: RecordFormat | None = None
) -> Converted | BadFile:
  """The example of one file (serialized with `record_format` if given), or a
  `BadFile`; never raises for a bad file."""
  try:
    return _convert(file, spec, record_format)
  except MtxError as e:
    return BadFile(str(file.path), f"{type(e).__name__}: {_without_path(str(e), file)}")
  except Exception as e:  # pylint: disable=broad-except
    # A failure mtx does not know yet (a parser bug, memory running out): skipped and
    # reported with its type, so that one file cannot stop a prepare of thousands.
    return BadFile(str(file.path), unexpected_reason(e))


def unexpected_reason(error: BaseException) -> str:
  """The report's reason for an exception mtx does not expect: never empty. A
  MemoryError (whose message is usually empty) says what ran out and what to do;
  another exception without a message says where it was raised."""
  message = " ".join(str(error).split())
  name = type(error).__name__
  if isinstance(error, MemoryError):
    return (
      f"unexpected MemoryError: {message + '; ' if message else ''}the converter ran "
      "out of memory on this file (it may need more than this machine has free beside "
      "the other workers): retry with fewer --num_workers, or drop the file"
    )
  if not message:
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    where = (
      f", raised at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"
      if frames
      else ""
    )
    message = f"(the exception has no message{where})"
  return f"unexpected {name}: {message}"


def _without_path(message: str, file: CorpusFile) -> str:
  """mtx's messages start with the file's path; the report has it in its own column."""
  prefix = f"{file.path}: "
  return message[len(prefix) :] if message.startswith(prefix) else message


def _convert(
  file: CorpusFile, spec: CodecSpec, record_format: RecordFormat | None
) -> Converted | BadFile:
  problem = file_problem(file.path)
  if problem and problem != "no such file":  # the reader says "no such file" itself
    raise MidiReadError(f"{file.path}: {problem}")
  table = load_note_table(file.path)
  if spec.shift_to_first_note:
    table = shift_to_first_beat(table, getattr(spec.codec(), "resolution", None))
  truncated = False
  try:
    tokens = spec.strict_codec().encode(table)
  except RepresentationOverflowError:
    if not spec.truncates:
      raise
    tokens = spec.codec().encode(table)
    truncated = True
  if spec.min_notes:
    kept = notes_kept(spec.codec(), tokens)
    if kept < spec.min_notes:
      return BadFile(
        str(file.path),
        f"{TOO_FEW_NOTES}: {kept} notes as {spec.representation} "
        f"keeps them, fewer than --min_notes {spec.min_notes}",
        dropped=True,
      )
  example = {
    "tokens": tokens.astype(np.int32, copy=False),
    # The file name's own bytes: kept exactly, whatever its encoding (os.fsdecode it).
    "path": os.fsencode(file.path),
    "md5": file.md5 or md5_of_file(file.path),
    "split": file.split,
    "metadata": {k: _text(v) for k, v in dict(file.metadata).items()},
    "num_notes": int(table.num_notes),
  }
  key = _text(file.key)
  if record_format is not None:
    return Converted(key, None, truncated, file.split, record_format.serialize(example))
  return Converted(key, example, truncated, file.split)


def _text(value: str) -> str | bytes:
  """A string from a file name as TFDS can store and hash it: itself when it is
  UTF-8, else its own bytes (a str with surrogateescape'd bytes cannot be encoded)."""
  try:
    value.encode("utf-8")
    return value
  except UnicodeEncodeError:
    return value.encode("utf-8", "surrogateescape")


def shift_to_first_beat(table: NoteTable, steps_per_beat: int | None = None) -> NoteTable:
  """`table` moved earlier by whole beats so that its first note lies in beat 0, its
  position in the beat kept: the MMT reference's `notes[:, 0] -= notes[0, 0]` on its
  (beat, position, ...) rows. With `steps_per_beat` (the codec's grid, mmt's 12), the
  first note's beat is the one it rounds into on that grid, as the reference's beat
  is; a note rounding up into that beat from just before it moves to tick 0.
  Tempo, time-signature and pedal events move too; the ones in force at the cut
  start at tick 0. A song whose first note is in beat 0 comes back as it was."""
  if table.num_notes == 0:
    return table
  tpb = int(table.ticks_per_beat)
  first = int(table.onset.min())
  if steps_per_beat:
    beat = int(ticks_to_steps(first, tpb, int(steps_per_beat))) // int(steps_per_beat)
  else:
    beat = first // tpb
  shift = beat * tpb
  if shift == 0:
    return table
  onset = np.maximum(table.onset - shift, 0)
  offset = np.maximum(table.offset - shift, onset)
  tempo_tick, tempo_mspq = normalize_tempos(
    np.maximum(table.tempo_tick - shift, 0), table.tempo_mspq
  )
  ts_tick, ts_num, ts_den = normalize_time_signatures(
    np.maximum(table.ts_tick - shift, 0), table.ts_numerator, table.ts_denominator
  )
  sustain_tick = np.maximum(table.sustain_tick - shift, 0)
  # Per track (events grouped by track, in time order): of the events moved to tick 0,
  # only the last, the pedal as it was at the cut.
  same_track = table.sustain_track[:-1] == table.sustain_track[1:]
  keep = np.ones(sustain_tick.shape, bool)
  keep[:-1] = ~(same_track & (sustain_tick[:-1] == 0) & (sustain_tick[1:] == 0))
  return dataclasses.replace(
    table,
    onset=onset,
    offset=offset,
    tempo_tick=tempo_tick,
    tempo_mspq=tempo_mspq,
    ts_tick=ts_tick,
    ts_numerator=ts_num,
    ts_denominator=ts_den,
    sustain_tick=sustain_tick[keep],
    sustain_value=table.sustain_value[keep],
    sustain_track=table.sustain_track[keep],
  )


def notes_kept(codec: Codec, tokens: np.ndarray) -> int:
  """How many notes `tokens` hold, as the codec decodes them (mmt: its note rows, after
  its own dropping of unknown programs and duplicates, as the reference counts)."""
  tokens = codec.check_tokens(tokens)
  return codec.decode_table(tokens, DecodeReport(strict=False, rows=int(tokens.shape[0]))).num_notes
