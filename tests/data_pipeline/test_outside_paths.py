"""File names and folders as a real corpus has them: names that are not UTF-8 or hold
tabs and newlines, symlinked subfolders and loops, a full disk; each kept exactly,
followed or reported in one line, never a traceback or a report that lies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from etils import epath

from data_pipeline import midi_folder
from data_pipeline.bad_files import read_bad_files, write_bad_files
from data_pipeline.convert import BadFile, CodecSpec, convert_file
from data_pipeline.corpus import (
  CorpusFile,
  LayoutError,
  midi_files_under,
  path_from_text,
  path_text,
)
from tests.data_pipeline.test_prepare import MMT, _records, _run, _summary_line

# Names a Linux file system holds and a report must give back exactly.
TRICKY_NAMES = [
  b"caf\xe9 latin-1.mid",
  "Bäch – ü.mid".encode(),
  b"tab\there.mid",
  b"new\nline.mid",
  b"back\\slash \\x41.mid",
  b"cr\rbell\x07.mid",
]


@pytest.mark.parametrize("name", TRICKY_NAMES, ids=repr)
def test_path_text_is_one_readable_line_and_gives_the_name_back(name):
  text = path_text(os.fsdecode(b"/corpus/" + name))
  assert "\t" not in text and "\n" not in text and "\r" not in text
  text.encode("utf-8")  # printable in a UTF-8 report: no surrogates left
  assert os.fsencode(path_from_text(text)) == b"/corpus/" + name
  assert path_text(b"/corpus/" + name) == text  # bytes or str, the same text


def test_path_text_leaves_ordinary_names_alone():
  assert path_text("/data/Bäch/bwv1.6 (2).mid") == "/data/Bäch/bwv1.6 (2).mid"
  assert path_text(os.fsdecode(b"caf\xe9.mid")) == "caf\\xe9.mid"


def test_bad_files_report_round_trips_every_name(tmp_path):
  rows = [
    BadFile(os.fsdecode(b"/c/" + name), f"MidiReadError: reason\twith\nbreaks {i}")
    for i, name in enumerate(TRICKY_NAMES)
  ]
  report = tmp_path / "bad_files.tsv"
  write_bad_files(epath.Path(report), rows)
  lines = report.read_bytes().decode("utf-8").split("\n")
  assert lines[0] == "path\treason" and lines[-1] == "" and len(lines) == len(rows) + 2
  assert all(line.count("\t") == 1 for line in lines[1:-1])
  assert read_bad_files(report) == rows


def _copy(source: Path, folder: Path, name: bytes) -> Path:
  target = os.path.join(os.fsencode(folder), name)
  shutil.copyfile(source, target)
  return Path(os.fsdecode(target))


def test_prepare_keeps_names_that_are_not_utf8_and_reports_them_readably(
  tmp_path, music21_chorales
):
  """The issue: a valid file named with a latin-1 byte was misfiled as bad, then
  writing bad_files.tsv crashed (exit 1) and nothing was kept."""
  root = tmp_path / "corpus"
  root.mkdir()
  good = [
    _copy(music21_chorales[i], root, name)
    for i, name in enumerate([b"caf\xe9.mid", b"tab\there.mid", b"plain.mid"])
  ]
  bad = [_copy(music21_chorales[0], root, name) for name in (b"bad\xff\nname.mid", b"bad\ttab.mid")]
  for path in bad:
    path.write_bytes(b"MThd not really")
  data_dir = tmp_path / "data"
  result = _run(
    "--dataset=midi_folder", f"--manual_dir={root}", f"--data_dir={data_dir}", "--num_workers=2"
  )
  assert result.returncode == 0, result.stderr
  line = _summary_line(result.stdout)
  assert (line.group(1), line.group(2)) == ("3", "2")
  report = Path(line.group(3))
  text = report.read_bytes().decode("utf-8")  # a UTF-8 report, one line per file
  assert len(text.splitlines()) == 3 and "bad\\xff\\nname.mid\t" in text
  rows = read_bad_files(report)
  assert sorted(r.path for r in rows) == sorted(str(p) for p in bad)
  assert all(os.path.exists(r.path) and r.reason.startswith("MidiReadError") for r in rows)
  records = [e for examples in _records("midi_folder", data_dir).values() for e in examples]
  paths = sorted(os.fsdecode(e["path"]) for e in records)
  assert paths == sorted(str(p) for p in good)  # the exact names, each an existing file
  for example in records:
    assert np.array_equal(example["tokens"], MMT.encode(os.fsdecode(example["path"])))
  again = _run("--dataset=midi_folder", f"--manual_dir={root}", f"--data_dir={data_dir}")
  assert again.returncode == 0 and "already prepared" in again.stdout, again.stderr


def test_mtx_tokenize_reports_the_same_names_reversibly(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  root.mkdir()
  _copy(music21_chorales[0], root, b"caf\xe9.mid")
  broken = _copy(music21_chorales[0], root, b"bad\ttab\xff.mid")
  broken.write_bytes(b"")
  out = tmp_path / "out"
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "mtx.cli.tokenize",
      f"--input_dir={root}",
      f"--output_dir={out}",
      "--representations=mmt",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr
  (row,) = (out / "bad_files.tsv").read_bytes().decode("utf-8").splitlines()[1:]
  path, representation, _ = row.split("\t")
  assert path_from_text(path) == str(broken) and representation == "mmt"
  assert os.path.exists(os.path.join(os.fsencode(out), b"mmt", b"caf\xe9.npy"))


# ---- symbolic links ----


def test_symlinked_subfolders_are_followed_each_real_folder_once(tmp_path, music21_chorales):
  """The issue: a symlinked subfolder (409 chorales) was skipped and listed nowhere."""
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  for path in music21_chorales[:3]:
    shutil.copy(path, elsewhere / path.name)
  root = tmp_path / "corpus"
  (root / "own").mkdir(parents=True)
  shutil.copy(music21_chorales[3], root / "own" / music21_chorales[3].name)
  (root / "linked").symlink_to(elsewhere, target_is_directory=True)
  (root / "own" / "loop").symlink_to(root, target_is_directory=True)  # back up: a loop
  (root / "zz_again").symlink_to(elsewhere, target_is_directory=True)  # a second way in
  (root / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)  # dangling
  files = midi_folder.list_files(root)
  keys = sorted(f.key for f in files)
  assert keys == sorted(
    [f"own/{music21_chorales[3].name}"] + [f"linked/{p.name}" for p in music21_chorales[:3]]
  )
  assert midi_files_under(root) == [f.path for f in sorted(files, key=lambda f: f.key)]


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, music21_chorales):
  if os.geteuid() == 0:
    pytest.skip(
      "running as root: every folder can be listed, so none can be made unreadable for this test"
    )
  root = tmp_path / "corpus"
  (root / "locked").mkdir(parents=True)
  shutil.copy(music21_chorales[0], root / music21_chorales[0].name)
  os.chmod(root / "locked", 0)
  try:
    with pytest.raises(LayoutError, match="locked: cannot list this folder"):
      midi_files_under(root)
  finally:
    os.chmod(root / "locked", 0o755)


def test_manual_dir_problems_are_named_in_one_line(tmp_path):
  a_file = tmp_path / "a_file.mid"
  a_file.write_bytes(b"")
  loop = tmp_path / "loop"
  loop.symlink_to(loop)
  dangling = tmp_path / "dangling"
  dangling.symlink_to(tmp_path / "moved_away")
  cases = {
    a_file: "is a file, not a folder",
    loop: "a symbolic link loop",
    dangling: f"a broken symbolic link (to {tmp_path / 'moved_away'}",
    tmp_path / "nowhere": "no such folder",
  }
  for manual_dir, message in cases.items():
    result = _run(
      "--dataset=midi_folder", f"--manual_dir={manual_dir}", f"--data_dir={tmp_path / 'data'}"
    )
    assert result.returncode == 2, result.stderr
    assert f"--manual_dir {manual_dir}: {message}" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_midi_file_that_is_a_link_loop_or_dangling_says_so(tmp_path):
  loop = tmp_path / "loop.mid"
  loop.symlink_to(loop)
  dangling = tmp_path / "dangling.mid"
  dangling.symlink_to(tmp_path / "moved.mid")
  reasons = {
    path.name: convert_file(CorpusFile(path, "train", path.name), CodecSpec("mmt")).reason
    for path in (loop, dangling)
  }
  assert reasons["loop.mid"].startswith("MidiReadError: a symbolic link loop")
  assert reasons["dangling.mid"].startswith(
    f"MidiReadError: a broken symbolic link (to {tmp_path / 'moved.mid'}"
  )


# ---- a full disk ----


@pytest.fixture
def small_disk(tmp_path):
  """A 256 KiB tmpfs: a disk that fills up (needs root and mount)."""
  mount = tmp_path / "small_disk"
  mount.mkdir()
  made = (
    subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
      capture_output=True,
      text=True,
      check=False,
    )
    if shutil.which("mount")
    else None
  )
  if made is None or made.returncode != 0:
    pytest.skip(
      "cannot mount a small tmpfs to fill up here (needs root and mount: "
      f"{made.stderr.strip() if made else 'no mount command'}); the full-disk "
      "path is not tested on this machine"
    )
  try:
    yield mount
  finally:
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_naming_it_and_nothing_is_kept(
  small_disk, tmp_path, music21_chorales
):
  root = tmp_path / "corpus"
  for copy in range(12):  # ~480 songs: a few hundred KiB of records, more than the disk
    folder = root / f"copy{copy:02d}"
    folder.mkdir(parents=True)
    for path in music21_chorales:
      (folder / path.name).symlink_to(path)
  result = _run(
    "--dataset=midi_folder", f"--manual_dir={root}", f"--data_dir={small_disk}", "--num_workers=2"
  )
  assert result.returncode == 2, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert lines[-1].startswith(
    f"error: --data_dir {small_disk}: the disk mounted at "
    f"{small_disk} is full (No space left on device"
  ), lines
  assert "nothing of it was kept" in lines[-1]
  config_dir = small_disk / "midi_folder" / "mmt"
  assert not (config_dir / "1.1.0").exists() and not list(config_dir.glob("incomplete.*"))
