"""`mtx-sample` as a user runs it: reproducible files, clear errors."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from mtx.representation import get_codec
from tests.train.helpers import REPO, cli_env


def _sample(*flags, timeout=600, devices=1):
  return subprocess.run(
    [sys.executable, "-m", "mtx.cli.sample", *flags],
    cwd=REPO,
    env=cli_env(devices),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _files(folder):
  return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_same_files_and_every_file_decodes(trained_workdir, tmp_path):
  common = [
    f"--workdir={trained_workdir}",
    "--num_samples=3",
    "--batch_size=2",
    "--max_length=40",
    "--top_p=0.9",
  ]
  first = _sample(*common, f"--output_dir={tmp_path / 'a'}", "--seed=7")
  assert first.returncode == 0, first.stderr[-2000:]
  assert "wrote 3 samples" in first.stdout
  # A healthy run warns about nothing, Orbax's read-only notices included.
  assert not re.findall(r"^[WE]\d{4} .*$", first.stderr, re.M), first.stderr[-2000:]
  again = _sample(*common, f"--output_dir={tmp_path / 'b'}", "--seed=7")
  other = _sample(*common, f"--output_dir={tmp_path / 'c'}", "--seed=8")
  on_two = _sample(*common, f"--output_dir={tmp_path / 'd'}", "--seed=7", devices=2)
  for done in (again, other, on_two):
    assert done.returncode == 0, done.stderr[-2000:]
  a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
  assert sorted(a) == [f"sample_{i:03d}.{ext}" for i in range(3) for ext in ("mid", "npy")]
  assert a == b and a != c
  assert _files(tmp_path / "d") == a  # the batch split over two devices: the same samples
  codec = get_codec("mmt")
  for i in range(3):
    codec.decode(np.load(tmp_path / "a" / f"sample_{i:03d}.npy"), strict=True)


def test_instruments_and_primer_modes_from_the_command_line(
  trained_workdir, tmp_path, music21_chorales
):
  done = _sample(
    f"--workdir={trained_workdir}",
    f"--output_dir={tmp_path / 'i'}",
    "--num_samples=2",
    "--max_length=32",
    "--instruments=piano,violin",
  )
  assert done.returncode == 0, done.stderr[-2000:]
  done = _sample(
    f"--workdir={trained_workdir}",
    f"--output_dir={tmp_path / 'p'}",
    "--num_samples=2",
    "--max_length=48",
    f"--primer={music21_chorales[3]}",
    "--primer_beats=2",
  )
  assert done.returncode == 0, done.stderr[-2000:]


def _one_error_line(done) -> str:
  assert done.returncode == 2, done.stderr[-2000:]
  assert "Traceback" not in done.stderr, done.stderr[-2000:]
  lines = done.stderr.strip().splitlines()
  assert lines[-1].startswith("error:"), lines
  return lines[-1]


def test_samples_run_past_the_window_within_the_time_limit(trained_workdir, tmp_path):
  done = _sample(
    f"--workdir={trained_workdir}",
    f"--output_dir={tmp_path}",
    "--num_samples=3",
    "--window=16",
    "--max_length=80",
    "--max_time_jump=2",
    "--seed=3",
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "sampling up to 80 rows, 16 in view, time jumps of at most 2 beats" in done.stdout
  assert "wrote 3 samples (.mid, .npy) from step" in done.stdout
  codec = get_codec("mmt")
  lengths = []
  for i in range(3):
    sample = np.load(tmp_path / f"sample_{i:03d}.npy")
    codec.decode(sample, strict=True)
    beats = sample[sample[:, 0] == 3, 1]
    assert ((np.diff(beats) >= 0) & (np.diff(beats) <= 2)).all()
    lengths.append(len(sample))
  assert max(lengths) <= 80 and max(lengths) > 16, lengths


@pytest.mark.parametrize(
  "case",
  [
    "no checkpoints",
    "not midi",
    "unknown instrument",
    "primer too long",
    "bad step",
    "silent primer beats",
    "primer past max_beat",
    "primer wider than the window",
    "negative limit",
  ],
)
def test_bad_input_is_one_line(trained_workdir, tmp_path, music21_chorales, case):
  out = f"--output_dir={tmp_path / 'out'}"
  if case == "no checkpoints":
    (tmp_path / "empty").mkdir()
    line = _one_error_line(_sample(f"--workdir={tmp_path / 'empty'}", out))
    assert "no checkpoint" in line
  elif case == "not midi":
    bad = tmp_path / "notes.mid"
    bad.write_text("these are not notes")
    line = _one_error_line(_sample(f"--workdir={trained_workdir}", out, f"--primer={bad}"))
    assert "notes.mid" in line
  elif case == "unknown instrument":
    line = _one_error_line(
      _sample(f"--workdir={trained_workdir}", out, "--instruments=piano,vilin")
    )
    assert "vilin" in line and "violin" in line
  elif case == "primer too long":
    line = _one_error_line(
      _sample(
        f"--workdir={trained_workdir}", out, f"--primer={music21_chorales[0]}", "--max_length=16"
      )
    )
    assert "primer" in line and "16" in line
  elif case == "primer wider than the window":
    line = _one_error_line(
      _sample(
        f"--workdir={trained_workdir}",
        out,
        f"--primer={music21_chorales[0]}",
        "--max_length=4000",
        "--window=8",
      )
    )
    assert "primer" in line and "--window of 8 rows" in line
  elif case == "negative limit":
    line = _one_error_line(_sample(f"--workdir={trained_workdir}", out, "--max_time_jump=-3"))
    assert "--max_time_jump" in line
  elif case in ("silent primer beats", "primer past max_beat"):
    # A real chorale moved later in time: 4 silent beats, or past MMT's last beat (1024).
    import miditoolkit

    midi = miditoolkit.MidiFile(str(music21_chorales[0]))
    shift = midi.ticks_per_beat * (4 if case == "silent primer beats" else 1100)
    for instrument in midi.instruments:
      for note in instrument.notes:
        note.start, note.end = note.start + shift, note.end + shift
    late = tmp_path / "late.mid"
    midi.dump(str(late))
    line = _one_error_line(
      _sample(f"--workdir={trained_workdir}", out, f"--primer={late}", "--primer_beats=2")
    )
    if case == "silent primer beats":
      assert "--primer_beats 2" in line and "first note starts on beat 4" in line
    else:
      assert "late.mid" in line and "after beat 1024" in line
  else:
    line = _one_error_line(_sample(f"--workdir={trained_workdir}", out, "--step=999"))
    assert "999" in line


def test_render_writes_wav_where_fluidsynth_is_and_says_why_not_elsewhere(
  trained_workdir, tmp_path
):
  import os
  import shutil

  soundfont = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
  done = _sample(
    f"--workdir={trained_workdir}",
    f"--output_dir={tmp_path}",
    "--num_samples=1",
    "--max_length=24",
    "--render=wav",
    f"--soundfont={soundfont}",
  )
  assert done.returncode == 0, done.stderr[-2000:]
  wav = tmp_path / "sample_000.wav"
  if shutil.which("fluidsynth") and os.path.isfile(soundfont):
    data = wav.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 44
    assert "wrote 1 samples (.mid, .npy, .wav) from step" in done.stdout
  else:
    assert "not rendering audio" in done.stderr and not wav.exists()
    assert "wrote 1 samples (.mid, .npy) from step" in done.stdout
  missing = _sample(
    f"--workdir={trained_workdir}",
    f"--output_dir={tmp_path / 'n'}",
    "--num_samples=1",
    "--max_length=24",
    "--render=wav",
    f"--soundfont={tmp_path / 'none.sf2'}",
  )
  assert missing.returncode == 0 and "not rendering audio" in missing.stderr
  assert not (tmp_path / "n" / "sample_000.wav").exists()
