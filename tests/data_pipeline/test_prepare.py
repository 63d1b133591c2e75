"""`mtx-prepare` as a user runs it: real corpora with bad files, the summary and
the report, the records read back, interrupted runs, bad flags."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipeline import midi_folder
from data_pipeline.bad_files import read_bad_files
from data_pipeline.builders import MidiFolder
from data_pipeline.configs import CONFIG_OPTIONS
from data_pipeline.corpus import md5_of_file, split_by_hash
from data_pipeline.music21_chorales import chorale_paths
from mtx.representation import get_codec
from tests.data_pipeline import layout_fixtures as lf

MMT = get_codec("mmt", **dict(CONFIG_OPTIONS["mmt"]))


def _command(*args):
  return [sys.executable, "-m", "mtx.cli.prepare", *args]


def _run(*args, timeout=300):
  return subprocess.run(_command(*args), capture_output=True, text=True, timeout=timeout)


def _summary_line(stdout: str) -> re.Match:
  match = re.search(
    r"^([\d,]+) converted, ([\d,]+) skipped: see (\S+/bad_files\.tsv)$", stdout, re.MULTILINE
  )
  assert match, stdout
  return match


def _records(name, data_dir, representation="mmt"):
  source = tfds.data_source(f"{name}/{representation}", data_dir=os.fspath(data_dir))
  return {split: list(source[split]) for split in source}


def test_prepares_a_midi_folder_skipping_and_reporting_the_bad_files(tmp_path, corpus_folder):
  root, good, bad = corpus_folder
  data_dir = tmp_path / "data"
  result = _run(
    "--dataset=midi_folder", f"--manual_dir={root}", f"--data_dir={data_dir}", "--num_workers=2"
  )
  assert result.returncode == 0, result.stderr
  line = _summary_line(result.stdout)
  dataset_dir = data_dir / "midi_folder" / "mmt" / "1.1.0"
  assert line.group(0) == (
    f"{len(good)} converted, {len(bad)} skipped: see {dataset_dir}/bad_files.tsv"
  )
  assert "files/s" in result.stderr and "bad 5" in result.stderr  # the progress bar
  rows = read_bad_files(line.group(3))
  assert {row.path: row.reason.split(":")[0] for row in rows} == bad
  records = _records("midi_folder", data_dir)
  expected = collections.Counter(
    f.split for f in midi_folder.list_files(root) if str(f.path) not in bad
  )
  assert {split: len(examples) for split, examples in records.items()} == expected
  for examples in records.values():
    for example in examples:
      assert np.array_equal(example["tokens"], MMT.encode(example["path"].decode()))


def test_prepares_the_bach_chorales_with_the_fixed_split(tmp_path, music21_chorales):
  data_dir = tmp_path / "data"
  result = _run("--dataset=jsb_chorales", f"--data_dir={data_dir}", "--limit=12")
  assert result.returncode == 0, result.stderr
  assert _summary_line(result.stdout).group(0).startswith("12 converted, 0 skipped: see ")
  ids = list(chorale_paths())[:12]
  records = _records("jsb_chorales", data_dir)
  assert {s: len(e) for s, e in records.items()} == collections.Counter(
    split_by_hash(i, 0.1, 0.1) for i in ids
  )
  reference = {p.stem: p for p in music21_chorales}
  for split, examples in records.items():
    for example in examples:
      path = example["path"].decode()
      chorale_id = example["metadata"]["chorale_id"].decode()
      assert split == example["split"].decode() == split_by_hash(chorale_id, 0.1, 0.1)
      assert example["metadata"]["music21_path"].decode() == f"bach/{chorale_id}.mxl"
      assert np.array_equal(example["tokens"], MMT.encode(path))
      # The cached MIDI is music21_chorales' conversion, byte for byte.
      assert example["md5"].decode() == md5_of_file(reference[chorale_id])
  assert sorted(p.name for p in (data_dir / "downloads" / "music21_chorales").iterdir()) == sorted(
    f"{i}.mid" for i in ids
  )


def test_a_second_run_reuses_the_dataset_and_overwrite_rebuilds_it(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  root.mkdir()
  for path in music21_chorales[:3]:
    (root / path.name).symlink_to(path)
  args = ("--dataset=midi_folder", f"--manual_dir={root}", f"--data_dir={tmp_path / 'd'}")
  assert _run(*args).returncode == 0
  again = _run(*args)
  assert again.returncode == 0 and "already prepared" in again.stdout
  assert _summary_line(again.stdout).group(1) == "3"
  (root / music21_chorales[3].name).symlink_to(music21_chorales[3])
  rebuilt = _run(*args, "--overwrite")
  assert rebuilt.returncode == 0 and _summary_line(rebuilt.stdout).group(1) == "4"


# ---- interrupted runs ----


def _big_folder(root: Path, chorales: list[Path], copies: int) -> int:
  """`copies` links to each chorale: a corpus that takes seconds to prepare."""
  for copy in range(copies):
    folder = root / f"copy{copy:03d}"
    folder.mkdir(parents=True)
    for path in chorales:
      (folder / path.name).symlink_to(path)
  return copies * len(chorales)


def _start_and_interrupt(tmp_path, chorales, sig, group: bool):
  """Starts a prepare of a big folder and sends `sig` once it is converting."""
  root, data_dir = tmp_path / "big", tmp_path / "data"
  count = _big_folder(root, chorales, copies=200)  # ~8,000 files: a few seconds
  args = (
    "--dataset=midi_folder",
    f"--manual_dir={root}",
    f"--data_dir={data_dir}",
    "--num_workers=2",
  )
  process = subprocess.Popen(
    _command(*args),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
  )
  config_dir = data_dir / "midi_folder" / "mmt"
  deadline = time.monotonic() + 120
  while not list(config_dir.glob("incomplete.*")) and time.monotonic() < deadline:
    assert process.poll() is None, process.communicate()
    time.sleep(0.05)
  time.sleep(0.3)  # converting by now
  assert process.poll() is None, (
    "the prepare finished before it could be interrupted: make the folder bigger"
  )
  if group:  # as Ctrl-C in a terminal: the whole foreground group
    os.killpg(process.pid, sig)
  else:
    os.kill(process.pid, sig)
  stdout, stderr = process.communicate(timeout=60)
  return process, args, config_dir, count, stderr


def _session_processes(session: int) -> list[int]:
  alive = []
  for entry in Path("/proc").iterdir():
    if entry.name.isdigit():
      try:
        if os.getsid(int(entry.name)) == session:
          alive.append(int(entry.name))
      except (ProcessLookupError, PermissionError):
        pass
  return alive


def _assert_nothing_loads(config_dir: Path, data_dir: Path):
  assert not (config_dir / "1.1.0").exists()
  assert not MidiFolder(config="mmt", data_dir=data_dir).is_prepared()
  with pytest.raises(Exception):  # noqa: B017  (whatever TFDS raises: the point is it fails)
    tfds.data_source("midi_folder/mmt", data_dir=os.fspath(data_dir))


def test_a_killed_prepare_leaves_nothing_that_loads_and_a_rerun_finishes(
  tmp_path, music21_chorales
):
  process, args, config_dir, count, _ = _start_and_interrupt(
    tmp_path, music21_chorales, signal.SIGKILL, group=False
  )
  assert process.returncode == -signal.SIGKILL
  assert list(config_dir.glob("incomplete.*"))  # killed mid-way, in TFDS's temporary folder
  _assert_nothing_loads(config_dir, tmp_path / "data")
  if Path("/proc").is_dir():  # the orphaned workers notice and exit
    deadline = time.monotonic() + 10
    while _session_processes(process.pid) and time.monotonic() < deadline:
      time.sleep(0.2)
    assert not _session_processes(process.pid)
  rerun = _run(*args)
  assert rerun.returncode == 0, rerun.stderr
  assert _summary_line(rerun.stdout).group(1) == f"{count:,}"
  assert not list(config_dir.glob("incomplete.*"))  # the leftover was removed
  assert sum(len(e) for e in _records("midi_folder", tmp_path / "data").values()) == count


def test_ctrl_c_stops_a_prepare_cleanly(tmp_path, music21_chorales):
  process, _, config_dir, _, stderr = _start_and_interrupt(
    tmp_path, music21_chorales, signal.SIGINT, group=True
  )
  assert process.returncode == 130, stderr
  assert "interrupted" in stderr and "Traceback" not in stderr
  assert not list(config_dir.glob("incomplete.*"))
  _assert_nothing_loads(config_dir, tmp_path / "data")


# ---- bad input ----


def test_bad_input_exits_2_with_one_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  empty = tmp_path / "empty"
  empty.mkdir()
  data = f"--data_dir={tmp_path / 'data'}"
  cases = {
    ("--dataset=nope", data): "unknown dataset 'nope'; choose one of jsb_chorales",
    (
      "--dataset=midi_folder",
      "--representation=abc",
      f"--manual_dir={empty}",
      data,
    ): "unknown representation 'abc'",
    ("--dataset=midi_folder", data): "midi_folder needs --manual_dir",
    (
      "--dataset=midi_folder",
      f"--manual_dir={tmp_path / 'nowhere'}",
      data,
    ): f"--manual_dir {tmp_path / 'nowhere'}: no such folder",
    ("--dataset=midi_folder", f"--manual_dir={empty}", data): "no MIDI file (.mid, .midi",
    (
      "--dataset=midi_folder",
      f"--manual_dir={empty}",
      f"--data_dir={blocker / 'data'}",
    ): f"{blocker} is a file, so no folder can be made under it",
    (
      "--dataset=midi_folder",
      f"--manual_dir={empty}",
      "--validation_ratio=0.6",
      "--test_ratio=0.5",
      data,
    ): "must be >= 0 and together less than 1",
    ("--dataset=jsb_chorales", "--test_ratio=0.2", data): "apply to midi_folder only",
    ("--dataset=jsb_chorales", "--lmd_variant=matched", data): "applies to lmd only",
    ("--dataset=lmd", "--lmd_variant=other", data): "lmd_variant",
    (
      "--dataset=midi_folder",
      f"--manual_dir={empty}",
      "--lmd_ids_file=ids.txt",
      data,
    ): "--lmd_ids_file applies to lmd only",
    ("--dataset=jsb_chorales", "--num_workers=-1", data): "must be >= 0",
    ("--no_such_flag=1",): "no_such_flag",
    (): "pass --dataset",
  }
  for args, message in cases.items():
    result = _run(*args)
    assert result.returncode == 2, (args, result.stderr)
    assert message in result.stderr, (args, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
      args,
      result.stderr,
    )
  assert not (tmp_path / "data" / "midi_folder").exists()  # nothing made before the checks


def test_lmd_ids_file_prepares_only_the_listed_files(tmp_path, music21_chorales):
  made = lf.make_lmd_full(tmp_path / "lmd", music21_chorales[:6])
  keep = sorted(made)[1:5]
  ids = tmp_path / "cleansed_ids.txt"
  ids.write_text("".join(f"{md5}\n" for md5 in keep))
  args = ("--dataset=lmd", f"--manual_dir={tmp_path / 'lmd'}", f"--data_dir={tmp_path / 'data'}")
  result = _run(*args, f"--lmd_ids_file={ids}")
  assert result.returncode == 0, result.stderr
  assert _summary_line(result.stdout).group(1) == str(len(keep))
  records = _records("lmd", tmp_path / "data")
  assert sorted(e["md5"].decode() for examples in records.values() for e in examples) == keep
  for examples in records.values():
    assert all(e["split"].decode() == split_by_hash(e["md5"].decode(), 0.1, 0.1) for e in examples)
  # The dataset remembers its list: the whole corpus is another source.
  whole = _run(*args)
  assert whole.returncode == 2 and "--overwrite" in whole.stderr
  missing = _run(*args, f"--lmd_ids_file={tmp_path / 'nowhere.txt'}", "--overwrite")
  assert missing.returncode == 2 and "cannot read it" in missing.stderr
  assert len(missing.stderr.strip().splitlines()) == 1


_UNGUARDED_SCRIPT = """
import sys
from data_pipeline.builders import MidiFolder
from data_pipeline.prepare import prepare
print("script: body runs", flush=True)
for run in range(2):
  builder = MidiFolder(config="mmt", data_dir=sys.argv[2] + str(run), num_workers=2)
  print("script:", prepare(builder, manual_dir=sys.argv[1]).converted, flush=True)
"""


def test_a_script_without_a_main_guard_can_prepare_twice(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  root.mkdir()
  for path in music21_chorales[:8]:
    (root / path.name).symlink_to(path)
  script = tmp_path / "unguarded.py"
  script.write_text(_UNGUARDED_SCRIPT)
  result = subprocess.run(
    [sys.executable, str(script), str(root), str(tmp_path / "data")],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=Path(__file__).resolve().parents[2],
  )
  assert result.returncode == 0, result.stderr
  # With the progress bar on (a tqdm thread) the body still ran once: workers
  # were forked, not started by a fork server that imports the script again.
  lines = [line for line in result.stdout.splitlines() if line.startswith("script:")]
  assert lines == ["script: body runs", "script: 8", "script: 8"], result.stdout


def test_beam_runner_without_apache_beam_says_how_to_install_it(tmp_path, music21_chorales):
  try:
    import apache_beam  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel

    pytest.skip("apache_beam is installed here; test_beam_direct_runner covers the Beam path")
  except ImportError:
    pass
  root = tmp_path / "corpus"
  root.mkdir()
  (root / music21_chorales[0].name).symlink_to(music21_chorales[0])
  result = _run(
    "--dataset=midi_folder",
    f"--manual_dir={root}",
    f"--data_dir={tmp_path / 'data'}",
    "--beam_runner=DirectRunner",
  )
  assert result.returncode == 2 and "pip install -e '.[beam]'" in result.stderr


@pytest.mark.beam
def test_beam_direct_runner_writes_the_same_records_and_report(tmp_path, corpus_folder):
  pytest.importorskip(
    "apache_beam",
    reason="Apache Beam is not installed: pip install -e '.[beam]' to run the Beam path",
  )
  root, good, bad = corpus_folder
  common = ("--dataset=midi_folder", f"--manual_dir={root}")
  beam = _run(*common, f"--data_dir={tmp_path / 'beam'}", "--beam_runner=DirectRunner")
  assert beam.returncode == 0, beam.stderr
  line = _summary_line(beam.stdout)
  assert (line.group(1), line.group(2)) == (str(len(good)), str(len(bad)))
  assert {r.path: r.reason.split(":")[0] for r in read_bad_files(line.group(3))} == bad
  assert not list((tmp_path / "beam" / "midi_folder" / "mmt" / "1.1.0").glob("bad_files-*"))
  local = _run(*common, f"--data_dir={tmp_path / 'local'}")
  assert local.returncode == 0, local.stderr
  truncated = [
    re.findall(r"^([\d,]+) of them truncated", run.stdout, re.MULTILINE) for run in (beam, local)
  ]
  assert truncated[0] == truncated[1]
  contents = []
  for data_dir in (tmp_path / "beam", tmp_path / "local"):
    records = _records("midi_folder", data_dir)
    contents.append(
      {
        split: [(e["path"], e["tokens"].tobytes(), e["md5"]) for e in examples]
        for split, examples in records.items()
      }
    )
  assert contents[0] == contents[1]  # the same records in the same order
