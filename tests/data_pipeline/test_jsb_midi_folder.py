"""The two layouts this package owns outright: the Bach chorales of music21's
corpus and any folder of MIDI files."""

from __future__ import annotations

import collections
import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios

import pytest

from data_pipeline import jsb_chorales, midi_folder
from data_pipeline.corpus import SPLITS, LayoutError, md5_of_file, split_by_hash
from data_pipeline.music21_chorales import chorale_paths, is_current
from mtx.errors import ConfigError


def test_jsb_split_is_fixed_by_chorale_id_and_matches_its_documentation():
  ids = list(chorale_paths())
  counts = collections.Counter(
    split_by_hash(i, jsb_chorales.VALIDATION_RATIO, jsb_chorales.TEST_RATIO) for i in ids
  )
  assert set(counts) == set(SPLITS)
  counted = f"{counts['train']}/{counts['validation']}/{counts['test']}"
  assert f"{counted} with music21 10.5.1" in jsb_chorales.DESCRIPTION or len(ids) != 409


def test_jsb_lists_the_first_chorales_and_caches_their_midi(tmp_path, music21_chorales):
  files = jsb_chorales.list_files(tmp_path / "cache", limit=5, num_workers=2)
  ids = list(chorale_paths())[:5]
  assert [f.key for f in files] == ids
  for file, reference in zip(files, music21_chorales):
    assert file.path == tmp_path / "cache" / f"{file.key}.mid"
    assert md5_of_file(file.path) == md5_of_file(reference)  # music21_chorales' conversion
    assert file.split == split_by_hash(file.key, 0.1, 0.1)
    assert tuple(file.metadata) == jsb_chorales.METADATA_KEYS
    assert file.metadata["music21_path"] == f"bach/{file.key}.mxl"
  stamps = [f.path.stat().st_mtime_ns for f in files]
  again = jsb_chorales.list_files(tmp_path / "cache", limit=5)
  assert again == files and [f.path.stat().st_mtime_ns for f in again] == stamps
  assert not list((tmp_path / "cache").glob("*.partial"))
  assert all(is_current(f.path) for f in files)


def _list_chorales(cache, stderr) -> subprocess.CompletedProcess:
  code = (
    "import sys; from data_pipeline import jsb_chorales; "
    "jsb_chorales.list_files(sys.argv[1], limit=3, num_workers=2)"
  )
  return subprocess.run(
    [sys.executable, "-c", code, str(cache)],
    stdout=subprocess.PIPE,
    stderr=stderr,
    timeout=300,
    check=True,
  )


def _read_all(fd: int) -> bytes:
  """What a pty's other end received, once it is closed; closes `fd`."""
  shown = b""
  try:
    while chunk := os.read(fd, 4096):
      shown += chunk
  except OSError:  # Linux: EIO once the other end is closed and all is read
    pass
  finally:
    os.close(fd)
  return shown


def test_jsb_conversion_shows_a_progress_bar_on_a_terminal_only(tmp_path):
  """The first prepare converts 409 scores (minutes on a busy machine): a bar
  says so on a terminal; a log (stderr not a terminal) gets nothing."""
  leader, follower = pty.openpty()
  # 24 rows, 100 columns: a new pty is 0 wide, where tqdm draws nothing.
  fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
  try:
    _list_chorales(tmp_path / "terminal", follower)
  finally:
    os.close(follower)
  shown = _read_all(leader)
  assert b"music21 chorales -> MIDI" in shown and b"3/3" in shown, shown
  logged = _list_chorales(tmp_path / "log", subprocess.PIPE)
  assert logged.stderr == b""
  assert len(list((tmp_path / "log").glob("*.mid"))) == 3


def test_midi_folder_finds_files_recursively_and_splits_by_content(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  (root / "a" / "b").mkdir(parents=True)
  shutil.copy(music21_chorales[0], root / "one.mid")
  shutil.copy(music21_chorales[0], root / "a" / "b" / "same_bytes.MIDI")
  shutil.copy(music21_chorales[1], root / "a" / "two.midi")
  (root / "a" / "notes.txt").write_text("not midi")
  files = midi_folder.list_files(root)
  assert [f.key for f in files] == ["a/b/same_bytes.MIDI", "a/two.midi", "one.mid"]
  assert [f.metadata for f in files] == [{"folder": "a/b"}, {"folder": "a"}, {"folder": ""}]
  for file in files:
    assert file.split == split_by_hash(md5_of_file(file.path), 0.1, 0.1)
  assert files[0].split == files[2].split  # identical bytes never straddle splits
  # Moving a file keeps its split; the ratios decide the rest.
  (root / "one.mid").rename(root / "a" / "moved.mid")
  moved = {f.key: f.split for f in midi_folder.list_files(root)}
  assert moved["a/moved.mid"] == files[2].split
  assert {f.split for f in midi_folder.list_files(root, validation=0, test=0)} == {"train"}
  assert {f.split for f in midi_folder.list_files(root, validation=0, test=0.999)} == {"test"}


def test_midi_folder_split_ratios_spread_a_real_corpus(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  root.mkdir()
  for path in music21_chorales:
    (root / path.name).symlink_to(path)
  counts = collections.Counter(f.split for f in midi_folder.list_files(root, 0.25, 0.25))
  assert sum(counts.values()) == len(music21_chorales)
  assert all(counts[split] >= len(music21_chorales) // 10 for split in SPLITS), counts


def test_midi_folder_bad_layouts_and_ratios_name_the_problem(tmp_path):
  with pytest.raises(LayoutError, match="nowhere: no such folder"):
    midi_folder.list_files(tmp_path / "nowhere")
  (tmp_path / "empty" / "sub").mkdir(parents=True)
  with pytest.raises(LayoutError, match=r"no MIDI file \(.mid, .midi, .kar, .rmi\) in it"):
    midi_folder.list_files(tmp_path / "empty")
  for validation, test in ((-0.1, 0.1), (0.5, 0.5), (0.2, 1.0)):
    with pytest.raises(ConfigError, match="--validation_ratio, --test_ratio"):
      midi_folder.list_files(tmp_path / "empty", validation, test)
  assert issubclass(LayoutError, ConfigError)
