"""MIDI in and out: the two readers that build a `NoteTable`, and the writer.

- `read_note_table(path)` parses with symusic (a C++ parser, about 100x faster
  than miditoolkit): the path used by data preparation.
- `note_table_from_miditoolkit(midi)` converts a `miditoolkit.MidiFile` already in
  memory: the public API's input type.
- `note_table_to_miditoolkit(table)` writes: codecs decode to a table, and this
  turns it into a `miditoolkit.MidiFile`.

Every failure of the parsers becomes one `MidiReadError` naming the file.

Before symusic parses a file, `scan_smf` walks its events once (pure Python,
about 0.1 s per MB) for two things symusic does not say: the last tick of each
track, so that a file whose delta times add up past symusic's 32-bit ticks
(they would wrap to negative times) is refused instead of read wrong, and the
note-ons that nothing releases, which symusic drops silently: they are counted
in the table's `ReadReport`.

Where the parsers disagree: a track whose program changes while a note sounds.
symusic gives the note the program in force at its note-on (what a synthesizer
plays); miditoolkit 1.0.1 gives it the program in force at its note-off. mtx
follows symusic. In `../shared/midi/` this moves 1-3 notes of
`testPrimitive/test04.mid` and `minimidi/mahler.mid` to a neighbouring program;
onsets, offsets, pitches and velocities agree on every file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import miditoolkit
import numpy as np

from mtx.errors import EmptyMidiError, MidiReadError
from mtx.representation.notetable import (
  MICROSECONDS_PER_MINUTE,
  NoteTable,
  ReadReport,
  build_note_table,
)

SUSTAIN_CONTROLLER = 64
# symusic keeps ticks in int32: a track that runs past this wraps to negative times.
MAX_TICK = 2**31 - 1

MidiLike = str | os.PathLike | miditoolkit.MidiFile


def _check_path(path: Path) -> None:
  if not path.exists():
    raise MidiReadError(f"{path}: no such file; check the path.")
  if not path.is_file():
    raise MidiReadError(f"{path}: is not a file (a directory?); pass a .mid file.")
  if path.stat().st_size == 0:
    raise MidiReadError(f"{path}: the file is empty (0 bytes); it is not a MIDI file.")


def read_note_table(path: str | os.PathLike) -> NoteTable:
  """Parses a MIDI file with symusic into a canonical `NoteTable`.

  Raises `MidiReadError` for a missing, empty, truncated or non-MIDI file.
  """
  import symusic  # imported here so that `import mtx` stays light

  path = Path(path)
  _check_path(path)
  try:
    data = path.read_bytes()
  except OSError as e:
    raise MidiReadError(f"{path}: cannot be read ({e.strerror}); check its permissions.") from None
  try:
    # From bytes: symusic picks a parser by the file's suffix, and karaoke (.kar) and
    # RIFF (.rmi) files are MIDI under other names.
    score = symusic.Score.from_midi(midi_bytes(data), ttype="tick")
  except Exception as e:  # symusic raises RuntimeError/ValueError with C++ text
    raise MidiReadError(
      f"{path}: not a readable MIDI file ({_short(e)}); the file is corrupt, "
      "truncated or not MIDI: re-export or drop it."
    ) from None
  tpq = int(score.ticks_per_quarter)
  if tpq <= 0:
    raise MidiReadError(
      f"{path}: the header gives {tpq} ticks per beat; SMPTE "
      "time division is not supported: re-export with PPQ timing."
    )
  scan = scan_smf(midi_bytes(data))
  if scan.last_tick > MAX_TICK:
    raise MidiReadError(
      f"{path}: a track runs to tick {scan.last_tick:,} ({scan.last_tick // tpq:,} beats), "
      f"past the {MAX_TICK:,} ticks MIDI readers hold; its delta times are corrupt: "
      "re-export or drop it."
    )
  tracks = []
  for track in score.tracks:
    notes = track.notes.numpy()
    controls = track.controls.numpy()
    sustain = controls["number"] == SUSTAIN_CONTROLLER
    tracks.append(
      dict(
        onset=notes["time"],
        offset=notes["time"] + notes["duration"],
        pitch=notes["pitch"],
        velocity=notes["velocity"],
        program=int(track.program),
        is_drum=bool(track.is_drum),
        name=str(track.name),
        sustain_tick=controls["time"][sustain],
        sustain_value=controls["value"][sustain],
      )
    )
  tracks = merge_layers(tracks)
  tempos = score.tempos.numpy()
  signatures = score.time_signatures.numpy()
  return build_note_table(
    ticks_per_beat=tpq,
    tracks=tracks,
    tempo_ticks=tempos["time"],
    tempo_mspq=tempos["mspq"],
    ts_ticks=signatures["time"],
    ts_numerators=signatures["numerator"],
    ts_denominators=signatures["denominator"],
    source=str(path),
    read_report=ReadReport(note_ons=scan.note_ons, unreleased=scan.unreleased),
  )


@dataclasses.dataclass(frozen=True)
class SmfScan:
  """What one pass over a Standard MIDI File's events finds (see `scan_smf`)."""

  note_ons: int = 0  # note-on events with velocity > 0
  unreleased: int = 0  # of those, the ones no note-off of their channel and pitch ends
  last_tick: int = 0  # the largest tick a track reaches (Python int: no overflow)


def scan_smf(data: bytes) -> SmfScan:
  """One pass over the track chunks of `data`, counting as a MIDI reader pairs notes.

  A note-on (velocity > 0) opens a note of its (track chunk, channel, pitch); a
  note-off or a note-on of velocity 0 closes the oldest open one (first in,
  first out, as symusic and miditoolkit pair); notes still open at the end of
  their track are `unreleased`. Damaged data never raises here: a chunk or event
  cut short ends its track, and symusic, which parses the same bytes, is the one
  that refuses a corrupt file.
  """
  size = len(data)
  if size < 14 or data[:4] != b"MThd":
    return SmfScan()
  position = 8 + int.from_bytes(data[4:8], "big")
  note_ons = unreleased = last_tick = 0
  while position + 8 <= size:
    kind = data[position : position + 4]
    length = int.from_bytes(data[position + 4 : position + 8], "big")
    i, end = position + 8, min(position + 8 + length, size)
    position += 8 + length
    if kind != b"MTrk":
      continue
    tick, running = 0, 0
    open_notes = [0] * (16 * 128)  # (channel, pitch) -> notes sounding
    while i < end:
      delta = 0
      while i < end:  # the delta time, a variable-length quantity
        byte = data[i]
        i += 1
        delta = (delta << 7) | (byte & 0x7F)
        if not byte & 0x80:
          break
      tick += delta
      if i >= end:
        break
      status = data[i]
      if status & 0x80:
        i += 1
        if status < 0xF0:
          running = status
      elif running:
        status = running
      else:
        break  # a data byte with no status to run on: the track is damaged
      if status < 0xF0:
        high = status & 0xF0
        if high == 0xC0 or high == 0xD0:
          i += 1
          continue
        if (high == 0x90 or high == 0x80) and i + 1 < end:
          key = (status & 0x0F) * 128 + (data[i] & 0x7F)
          if high == 0x90 and data[i + 1]:
            note_ons += 1
            open_notes[key] += 1
          elif open_notes[key]:
            open_notes[key] -= 1
        i += 2
      elif status == 0xFF or status == 0xF0 or status == 0xF7:
        i += status == 0xFF  # the meta type byte
        length = 0
        while i < end:
          byte = data[i]
          i += 1
          length = (length << 7) | (byte & 0x7F)
          if not byte & 0x80:
            break
        i += length
      else:
        i += {0xF1: 1, 0xF2: 2, 0xF3: 1}.get(status, 0)
    unreleased += sum(open_notes)
    last_tick = max(last_tick, tick)
  return SmfScan(note_ons=note_ons, unreleased=unreleased, last_tick=last_tick)


def midi_bytes(data: bytes) -> bytes:
  """The Standard MIDI File in `data`: `data` itself, or the "data" chunk of a RIFF MIDI
  file (RMID, `.rmi`: a MIDI file in a RIFF wrapper, as Windows wrote them). Anything
  else is returned as is, for the parser to reject."""
  if data[:4] != b"RIFF" or data[8:12] != b"RMID":
    return data
  position = 12
  while position + 8 <= len(data):
    chunk, size = (
      data[position : position + 4],
      int.from_bytes(data[position + 4 : position + 8], "little"),
    )
    if chunk == b"data":
      return data[position + 8 : position + 8 + size]
    position += 8 + size + (size & 1)  # RIFF chunks are padded to even sizes
  return data


def _short(error: Exception) -> str:
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return text[:200]


def note_table_from_miditoolkit(midi: miditoolkit.MidiFile, source: str = "<memory>") -> NoteTable:
  """Converts a parsed `miditoolkit.MidiFile` into a canonical `NoteTable`."""
  tracks = []
  for inst in midi.instruments:
    notes = inst.notes
    sustain = [c for c in inst.control_changes if c.number == SUSTAIN_CONTROLLER]
    tracks.append(
      dict(
        onset=[n.start for n in notes],
        offset=[n.end for n in notes],
        pitch=[n.pitch for n in notes],
        velocity=[n.velocity for n in notes],
        program=int(inst.program),
        is_drum=bool(inst.is_drum),
        name=str(inst.name),
        sustain_tick=[c.time for c in sustain],
        sustain_value=[c.value for c in sustain],
      )
    )
  tracks = merge_layers(tracks)
  tempo_mspq = [
    int(round(MICROSECONDS_PER_MINUTE / t.tempo)) if t.tempo > 0 else 500_000
    for t in midi.tempo_changes
  ]
  return build_note_table(
    ticks_per_beat=int(midi.ticks_per_beat),
    tracks=tracks,
    tempo_ticks=[t.time for t in midi.tempo_changes],
    tempo_mspq=tempo_mspq,
    ts_ticks=[t.time for t in midi.time_signature_changes],
    ts_numerators=[t.numerator for t in midi.time_signature_changes],
    ts_denominators=[t.denominator for t in midi.time_signature_changes],
    source=source,
  )


def read_with_miditoolkit(path: str | os.PathLike) -> NoteTable:
  """Parses with miditoolkit (slow; the cross-check of `read_note_table`)."""
  path = Path(path)
  _check_path(path)
  try:
    midi = miditoolkit.MidiFile(str(path))
  except Exception as e:  # mido raises EOFError/OSError/KeyError/ValueError
    raise MidiReadError(
      f"{path}: not a readable MIDI file ({type(e).__name__}: {_short(e)}); the file "
      "is corrupt, truncated or not MIDI: re-export or drop it."
    ) from None
  return note_table_from_miditoolkit(midi, source=str(path))


def load_note_table(midi: MidiLike | NoteTable, *, require_notes: bool = True) -> NoteTable:
  """The codecs' entry point: a path, a `miditoolkit.MidiFile` or a table."""
  if isinstance(midi, NoteTable):
    table = midi
  elif isinstance(midi, miditoolkit.MidiFile):
    table = note_table_from_miditoolkit(midi)
  elif isinstance(midi, (str, os.PathLike)):
    table = read_note_table(midi)
  else:
    raise MidiReadError(
      f"cannot read MIDI from a {type(midi).__name__}: pass a file path, a "
      "miditoolkit.MidiFile or a NoteTable."
    )
  if require_notes and table.num_notes == 0:
    raise EmptyMidiError(
      f"{table.source}: the MIDI file holds no notes; there is "
      "nothing to encode: drop it from the corpus."
    )
  return table


def note_table_to_miditoolkit(table: NoteTable) -> miditoolkit.MidiFile:
  """Writes a table as a `miditoolkit.MidiFile`: one instrument per track.

  MIDI cannot hold two sounding notes of one pitch on one channel: a parser
  pairs their note-offs in its own way and durations change. So a track whose
  notes overlap on a pitch is written as several instruments with the same
  program ("layers", named by `layer_name`), each free of such overlaps, and
  both readers merge the layers back (`merge_layers`): the file reads back as it
  was written, tracks included.
  """
  midi = miditoolkit.MidiFile(ticks_per_beat=int(table.ticks_per_beat))
  midi.tempo_changes = [
    miditoolkit.TempoChange(MICROSECONDS_PER_MINUTE / float(m), int(t))
    for t, m in zip(table.tempo_tick, table.tempo_mspq)
  ]
  midi.time_signature_changes = [
    miditoolkit.TimeSignature(int(n), int(d), int(t))
    for t, n, d in zip(table.ts_tick, table.ts_numerator, table.ts_denominator)
  ]
  notes = table.notes_array()
  for track in np.unique(table.track):
    rows = notes[notes[:, 6] == track]
    program, is_drum = int(rows[0, 4]), bool(rows[0, 5])
    name = "Drums" if is_drum else f"Program {program}"
    sustain = table.sustain_track == track
    for layer, layer_rows in enumerate(_layers_without_same_pitch_overlap(rows)):
      inst = miditoolkit.Instrument(program=program, is_drum=is_drum, name=layer_name(name, layer))
      inst.notes = [
        miditoolkit.Note(velocity=int(r[3]), pitch=int(r[2]), start=int(r[0]), end=int(r[1]))
        for r in layer_rows
      ]
      if layer == 0:
        inst.control_changes = [
          miditoolkit.ControlChange(SUSTAIN_CONTROLLER, int(v), int(t))
          for t, v in zip(table.sustain_tick[sustain], table.sustain_value[sustain])
        ]
      midi.instruments.append(inst)
  midi.max_tick = int(table.offset.max()) if table.num_notes else 0
  return midi


LAYER_MARK = " [layer "


def layer_name(name: str, layer: int) -> str:
  """The name the writer gives layer `layer` (0-based) of a track named `name`."""
  return name if layer == 0 else f"{name}{LAYER_MARK}{layer + 1}]"


def merge_layers(tracks: list[dict]) -> list[dict]:
  """Tracks with the layers the writer split off merged back into their track.

  A track named `layer_name(base, k)` joins the nearest earlier track named
  `base` with the same program and drum flag, so that a table written and read
  back keeps its tracks (MMM writes one track per track, and same-onset notes of
  one pitch need layers to survive MIDI). A track that merely looks like a
  layer, with no such base before it, stays a track of its own.
  """
  merged: list[dict] = []
  for track in tracks:
    name = track.get("name", "")
    base_name, mark, rest = name.rpartition(LAYER_MARK)
    base = None
    if mark and rest.endswith("]") and rest[:-1].isdigit():
      base = next(
        (
          t
          for t in reversed(merged)
          if t.get("name", "") == base_name
          and t["program"] == track["program"]
          and t["is_drum"] == track["is_drum"]
        ),
        None,
      )
    if base is None:
      merged.append(dict(track))
      continue
    for column in ("onset", "offset", "pitch", "velocity", "sustain_tick", "sustain_value"):
      base[column] = np.concatenate(
        [np.asarray(base.get(column, ()), np.int64), np.asarray(track.get(column, ()), np.int64)]
      )
  return merged


def _layers_without_same_pitch_overlap(rows: np.ndarray) -> list[np.ndarray]:
  """Splits note rows (sorted by onset) into layers where no pitch overlaps itself."""
  layer_of = np.zeros(rows.shape[0], np.int64)
  free_at: list[dict[int, int]] = [{}]  # per layer: pitch -> tick it is free again
  for i, (onset, offset, pitch) in enumerate(rows[:, :3].tolist()):
    layer = 0
    while free_at[layer].get(pitch, onset) > onset:
      layer += 1
      if layer == len(free_at):
        free_at.append({})
    free_at[layer][pitch] = max(offset, onset + 1)  # a zero-length note still takes its tick
    layer_of[i] = layer
  return [rows[layer_of == k] for k in range(len(free_at))]
