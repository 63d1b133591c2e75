"""Bad flags of mtx-sample and mtx-tokenize are refused up front, in one line, exit 2:
before a model loads (20 s for a real one), before any file is read or written.

mtx-sample is given a workdir without checkpoints: had it loaded the run first, the
error would be "no checkpoint"; each refusal here names the flag instead."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.train.helpers import REPO, cli_env


def _binary(module, *flags):
  return subprocess.run(
    [sys.executable, "-m", module, *flags],
    cwd=REPO,
    env=cli_env(1),
    capture_output=True,
    text=True,
    timeout=300,
  )


def _one_line(done) -> str:
  assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
  assert "Traceback" not in done.stderr, done.stderr[-2000:]
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  return lines[0]


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--top_k=-1", "--top_k -1: must be an integer >= 0"),
    ("--top_p=0", "--top_p 0.0: must be in (0, 1]"),
    ("--top_p=2", "--top_p 2.0: must be in (0, 1]"),
    ("--top_p=0.9,1.5", "--top_p 1.5: must be in (0, 1]"),
    ("--temperature=-1", "--temperature -1.0: must be a number >= 0"),
    ("--temperature=nan", "--temperature nan: must be a number >= 0"),
    ("--temperature=inf", "--temperature inf: must be a number >= 0"),
    ("--top_k_fraction=1.5", "--top_k_fraction 1.5: must be in [0, 1]"),
    ("--max_length=-5", "--max_length -5: must be >= 0"),
    ("--window=-1", "--window -1: must be >= 0"),
    ("--num_samples=0", "--num_samples 0: must be at least 1"),
    ("--max_time_jump=-3", "--max_time_jump -3: must be >= 0"),
  ],
)
def test_mtx_sample_refuses_bad_sampling_values_before_loading(tmp_path, flag, message):
  (tmp_path / "run").mkdir()
  line = _one_line(
    _binary(
      "mtx.cli.sample", f"--workdir={tmp_path / 'run'}", f"--output_dir={tmp_path / 'out'}", flag
    )
  )
  assert message in line and "primer" not in line
  assert not (tmp_path / "out").exists()  # refused before anything was made


def test_mtx_sample_refuses_an_output_dir_that_is_a_file_before_loading(tmp_path):
  (tmp_path / "run").mkdir()
  a_file = tmp_path / "samples"
  a_file.write_text("")
  line = _one_line(
    _binary("mtx.cli.sample", f"--workdir={tmp_path / 'run'}", f"--output_dir={a_file}")
  )
  assert f"--output_dir {a_file}: is a file, not a folder" in line
  line = _one_line(
    _binary("mtx.cli.sample", f"--workdir={tmp_path / 'run'}", f"--output_dir={a_file / 'sub'}")
  )
  assert f"{a_file} is a file, so no folder can be made under it" in line
  # A good output_dir gets past the checks, to the run itself.
  line = _one_line(
    _binary("mtx.cli.sample", f"--workdir={tmp_path / 'run'}", f"--output_dir={tmp_path / 'out'}")
  )
  assert "no checkpoint" in line


def test_mtx_tokenize_refuses_an_output_dir_that_is_a_file(tmp_path, music21_chorales):
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  (corpus / music21_chorales[0].name).symlink_to(music21_chorales[0])
  a_file = tmp_path / "out"
  a_file.write_text("")
  line = _one_line(_binary("mtx.cli.tokenize", f"--input_dir={corpus}", f"--output_dir={a_file}"))
  assert f"--output_dir {a_file}: is a file, not a folder" in line
  line = _one_line(
    _binary("mtx.cli.tokenize", f"--input_dir={a_file}", f"--output_dir={tmp_path / 'o'}")
  )
  assert f"--input_dir {a_file}: is a file, not a folder" in line
