"""`mtx-tokenize` as a user runs it: real chorales, bad files, bad flags."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np

from mtx.representation import get_codec


def _run(*args):
  return subprocess.run(
    [sys.executable, "-m", "mtx.cli.tokenize", *args], capture_output=True, text=True, timeout=300
  )


def test_tokenizes_real_files_skips_bad_ones_and_reports_them(tmp_path, music21_chorales):
  corpus = tmp_path / "corpus"
  (corpus / "nested").mkdir(parents=True)
  for path in music21_chorales[:3]:
    shutil.copy(path, corpus / "nested" / path.name)
  (corpus / "empty.mid").write_bytes(b"")
  (corpus / "truncated.mid").write_bytes(music21_chorales[0].read_bytes()[:100])
  out = tmp_path / "out"
  result = _run(f"--input_dir={corpus}", f"--output_dir={out}", "--representations=mmt")
  assert result.returncode == 0, result.stderr
  assert "| mmt | 3 | 2 |" in result.stdout
  rows = (out / "bad_files.tsv").read_text().splitlines()[1:]
  assert sorted(r.split("\t")[0] for r in rows) == sorted(
    [str(corpus / "empty.mid"), str(corpus / "truncated.mid")]
  )
  for path in music21_chorales[:3]:
    tokens = np.load(out / "mmt" / "nested" / (path.stem + ".npy"))
    assert np.array_equal(tokens, get_codec("mmt").encode(path))
    decoded = out / "mmt" / "nested" / (path.stem + ".mid")
    assert np.array_equal(get_codec("mmt").encode(decoded), tokens)


def test_bad_flags_exit_2_with_one_line(tmp_path):
  missing = _run(f"--input_dir={tmp_path / 'nowhere'}", f"--output_dir={tmp_path}")
  assert missing.returncode == 2
  assert "nowhere: no such folder" in missing.stderr and "Traceback" not in missing.stderr
  unknown = _run(f"--input_dir={tmp_path}", f"--output_dir={tmp_path}", "--representations=abc")
  assert unknown.returncode == 2 and "unknown representation 'abc'" in unknown.stderr
  empty = _run(f"--input_dir={tmp_path}", f"--output_dir={tmp_path / 'o'}")
  assert empty.returncode == 2
  assert f"--input_dir {tmp_path}: no MIDI file (.mid, .midi, .kar, .rmi) in it" in empty.stderr
  flag = _run("--no_such_flag=1")
  assert flag.returncode == 2 and "no_such_flag" in flag.stderr
