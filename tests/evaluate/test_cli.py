"""`mtx-eval` as a user runs it: a whole report from a trained run, the same bytes for the
same command, and one clear line for every bad input with nothing half-written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mtx.errors import ConfigError
from mtx.evaluate.evaluator import choose_analyses
from mtx.representation import get_codec
from tests.evaluate.test_report import CHROMIUM_MISSING, _chromium, _load, _Page
from tests.train.helpers import REPO, cli_env

# The shared trained run holds no test split (tests/conftest.py prepares train and
# validation), so these evaluate against validation, with small settings.
QUICK = [
  "--split=validation",
  "--num_samples=3",
  "--sample_length=48",
  "--attention_sequences=2",
  "--num_audio=1",
]


def _eval(*flags, timeout=600):
  return subprocess.run(
    [sys.executable, "-m", "mtx.cli.evaluate", *flags],
    cwd=REPO,
    env=cli_env(1),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _one_error_line(done) -> str:
  assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1, done.stderr[-3000:]
  return lines[0]


@pytest.fixture(scope="module")
def report_dir(trained_workdir, tmp_path_factory):
  out = tmp_path_factory.mktemp("eval")
  done = _eval(f"--workdir={trained_workdir}", f"--output_dir={out}", *QUICK)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "report.html" in done.stdout
  return out


def test_a_trained_run_gets_every_section_and_figure(report_dir, trained_workdir):
  report = json.loads((report_dir / "report.json").read_text())
  assert report["run"]["step"] == 40 and report["run"]["split"] == "validation"
  assert set(report["analyses"]) == {"nll", "metrics", "attention", "embeddings", "curves"}
  likelihood = report["likelihood"]
  assert likelihood["rows"] == sum(s["rows"] for s in likelihood["songs"])
  assert set(likelihood["fields"]) == set(get_codec("mmt").fields.names)
  assert 0 < likelihood["nats_per_row"] < likelihood["nats_per_note"]
  metrics = report["music_metrics"]
  assert len(metrics["files"]["samples"]) == 3
  assert (
    metrics["samples"]["pitch_class_entropy"]["count"]
    + metrics["samples"]["pitch_class_entropy"]["nan"]
    == 3
  )
  assert metrics["strict_decode_fraction"] == 1.0  # the grammar keeps every row decodable
  assert metrics["ground_truth"]["scale_consistency"]["mean"] > 0.85  # Bach: in key
  assert report["attention"]["beat"]["ks"][0] == 0
  assert (
    report["embeddings"]["pitch"]["input_octave"]["num_octave_pairs"] == 2 * 116
  )  # ordered pairs 12 apart
  assert report["curves"]["available"] is True
  for name in report["definitions"]:
    assert report["definitions"][name]
  html = (report_dir / "report.html").read_text()
  assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
  for name in ("sample_000.mid", "sample_000.npy"):
    assert (report_dir / "drawn_samples" / name).is_file()


def test_the_same_command_writes_the_same_report(report_dir, trained_workdir, tmp_path):
  done = _eval(f"--workdir={trained_workdir}", f"--output_dir={tmp_path}", *QUICK)
  assert done.returncode == 0, done.stderr[-3000:]
  assert (tmp_path / "report.json").read_bytes() == (report_dir / "report.json").read_bytes()
  other = _eval(
    f"--workdir={trained_workdir}",
    f"--output_dir={tmp_path / 'b'}",
    *QUICK,
    "--seed=1",
    "--analyses=metrics",
  )
  assert other.returncode == 0, other.stderr[-3000:]
  first = json.loads((report_dir / "report.json").read_text())["music_metrics"]
  second = json.loads((tmp_path / "b" / "report.json").read_text())["music_metrics"]
  assert first["files"]["samples"] != second["files"]["samples"]  # another seed
  assert first["ground_truth"] == second["ground_truth"]


def test_samples_dir_skips_and_lists_corrupt_files(report_dir, trained_workdir, tmp_path):
  samples = tmp_path / "samples"
  samples.mkdir()
  for name in ("sample_000.mid", "sample_000.npy", "sample_001.mid"):
    shutil.copy(report_dir / "drawn_samples" / name, samples / name)
  good = (samples / "sample_001.mid").read_bytes()
  (samples / "truncated.mid").write_bytes(good[: len(good) // 2])
  (samples / "empty.mid").write_bytes(b"")
  (samples / "notes.txt").write_text("not music")
  done = _eval(
    f"--workdir={trained_workdir}",
    f"--output_dir={tmp_path / 'out'}",
    f"--samples_dir={samples}",
    "--analyses=metrics",
    *QUICK,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert "skipped truncated.mid" in done.stderr and "skipped empty.mid" in done.stderr
  metrics = json.loads((tmp_path / "out" / "report.json").read_text())["music_metrics"]
  assert [f["name"] for f in metrics["files"]["samples"]] == ["sample_000.mid", "sample_001.mid"]
  assert sorted(f["file"] for f in metrics["skipped_files"]) == ["empty.mid", "truncated.mid"]
  assert metrics["strict_decode_count"] == 1  # only sample_000 came with its tokens
  drawn = json.loads((report_dir / "report.json").read_text())["music_metrics"]
  # The same music read back from the MIDI files measures the same as from its tokens.
  for mine, theirs in zip(metrics["files"]["samples"], drawn["files"]["samples"][:2]):
    for name, value in theirs["metrics"].items():
      if value is None:
        assert mine["metrics"][name] is None
      else:
        assert mine["metrics"][name] == pytest.approx(value, rel=1e-6), name


def test_bad_input_is_one_line_and_leaves_the_old_report(trained_workdir, tmp_path, report_dir):
  out = tmp_path / "out"
  out.mkdir()
  (out / "report.json").write_text('{"an": "older report"}\n')
  empty = tmp_path / "empty"
  empty.mkdir()
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  run = [f"--workdir={trained_workdir}", "--split=validation"]
  cases = [
    ([f"--workdir={tmp_path / 'nothing'}"], "does not exist"),
    ([f"--workdir={empty}"], "no checkpoint"),
    ([f"--workdir={trained_workdir}", "--split=test"], "no such split"),
    ([*run, f"--samples_dir={tmp_path / 'missing'}"], "does not exist"),
    ([*run, f"--samples_dir={empty}"], "holds no MIDI files"),
    ([*run, f"--samples_dir={a_file}"], "is a file"),
    ([*run, "--analyses=nll,pitch"], "unknown pitch"),
    ([*run, "--step=999"], "no checkpoint at step 999"),
    ([*run, "--num_samples=0"], "must be positive"),
    ([*run, f"--data_dir={empty}"], "--data_dir"),
  ]
  for flags, expected in cases:
    line = _one_error_line(_eval(*flags, f"--output_dir={out}"))
    assert expected in line, (flags, line)
  assert (out / "report.json").read_text() == '{"an": "older report"}\n'
  line = _one_error_line(_eval(f"--workdir={trained_workdir}", f"--output_dir={a_file}"))
  assert "is a file" in line and a_file.read_text() == "x"


def test_attention_on_a_representation_without_its_fields_is_refused():
  with pytest.raises(ConfigError, match="representation 'performance' has only event"):
    choose_analyses(("nll", "attention"), get_codec("performance"))
  assert "attention" not in choose_analyses(None, get_codec("performance"))
  assert "attention" in choose_analyses(None, get_codec("mmt"))
  assert np.all(
    [
      a in choose_analyses(None, get_codec("remi"))
      for a in ("nll", "metrics", "embeddings", "curves")
    ]
  )


@pytest.mark.skipif(_chromium() is None, reason=CHROMIUM_MISSING)
def test_the_real_report_opens_in_a_browser_with_every_figure(report_dir, tmp_path):
  """The page mtx-eval wrote for a trained run, in headless Chromium: no console error,
  nothing fetched, every figure it lists is in the DOM as an embedded PNG."""
  loaded = _load(report_dir / "report.html", tmp_path / "chromium")
  assert loaded["console"] == [] and loaded["requests"] == []
  images = _Page(loaded["dom"]).all("img")
  figures = {p.name for p in (report_dir / "figures").glob("*.png")}
  assert len(images) == len(figures) >= 20
  assert all(a["src"].startswith("data:image/png;base64,") for a in images)
