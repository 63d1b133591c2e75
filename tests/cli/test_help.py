"""`--help` of every mtx binary, as a newcomer runs it: the binary's own flags,
exit status 0, both as `python -m mtx.cli.NAME` and as the console script (where
`__main__` is setuptools' wrapper, which defines no flag: absl alone printed
only "Try --helpfull" there, and exited 1)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.midi_corpus import REPO

# Each console script of setup.py: "mtx-sample=mtx.cli.sample:run".
SCRIPTS = dict(
  re.findall(r'"(mtx-[a-z]+)=(mtx\.cli\.[a-z_]+):run"', (REPO / "setup.py").read_text())
)
# Flags each binary's help must name: the ones its docstring's examples use.
MAIN_FLAGS = {
  "mtx-tokenize": ("--input_dir", "--output_dir", "--representations"),
  "mtx-prepare": (
    "--dataset",
    "--manual_dir",
    "--data_dir",
    "--representation",
    "--num_workers",
    "--limit",
    "--overwrite",
  ),
  "mtx-train": ("--config", "--workdir"),
  "mtx-sample": ("--workdir", "--output_dir", "--num_samples", "--temperature", "--render"),
  "mtx-eval": ("--workdir", "--output_dir", "--split", "--analyses"),
  "mtx-launch": ("--template", "--config", "--workdir", "--nodes", "--dry_run"),
}


def test_every_console_script_is_checked():
  assert set(SCRIPTS) == set(MAIN_FLAGS)


def _help(args: list[str], flag: str = "--help") -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, *args, flag], capture_output=True, text=True, timeout=120, cwd=REPO
  )


@pytest.mark.parametrize("script", sorted(MAIN_FLAGS))
def test_help_lists_the_binarys_own_flags_and_exits_0(script):
  module = SCRIPTS[script]
  as_module = _help(["-m", module])
  # What the console script does: __main__ is a wrapper that imports `run`.
  as_script = _help(
    ["-c", f"import sys; sys.argv[0] = {script!r}; from {module} import run; sys.exit(run())"]
  )
  for result in (as_module, as_script):
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith(f"`{script}`"), out[:200]  # the binary's docstring first
    for flag in MAIN_FLAGS[script]:
      assert re.search(rf"^\s+{flag}\b|^\s+--\[no\]{flag[2:]}\b", out, re.MULTILINE), (flag, out)
    assert "--verbosity" not in out  # absl's flags wait for --helpfull
    assert "--helpfull" in out


def test_helpfull_lists_every_flag_and_exits_0():
  result = _help(["-m", SCRIPTS["mtx-sample"]], "--helpfull")
  assert result.returncode == 0, result.stderr
  assert "--verbosity" in result.stdout and "--workdir" in result.stdout
