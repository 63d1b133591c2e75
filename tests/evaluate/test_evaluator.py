"""The evaluation of a run in a single-field representation: every analysis that applies
runs, and the one that needs mmt's fields is left out."""

from __future__ import annotations

import json
import shutil

from mtx.evaluate.evaluator import EvalOptions, evaluate
from tests.train.helpers import small_config, use_compilation_cache


def test_a_performance_run_is_evaluated(music21_chorales, tmp_path):
  from data_pipeline.builders import get_builder_class
  from data_pipeline.prepare import prepare
  from mtx.train.loop import train

  use_compilation_cache()
  folder = tmp_path / "midi"
  folder.mkdir()
  for path in music21_chorales[:8]:
    shutil.copy(path, folder / path.name)
  data_dir = tmp_path / "data"
  builder = get_builder_class("midi_folder")(
    config="performance",
    data_dir=data_dir,
    num_workers=1,
    progress=False,
    corpus_options=dict(validation=0.25, test=0.0),
  )
  prepare(builder, manual_dir=folder)
  config = small_config(data_dir, num_steps=2, checkpoint_every=2, eval_every=2, log_every=2)
  config.data.representation = "performance"
  train(config, tmp_path / "run")
  lines = []
  report = evaluate(
    EvalOptions(
      workdir=str(tmp_path / "run"),
      output_dir=str(tmp_path / "out"),
      split="validation",
      num_samples=2,
      sample_length=40,
      num_audio=0,
    ),
    log=lines.append,
  )
  assert report["analyses"] == ["nll", "metrics", "embeddings", "curves"]
  likelihood = report["likelihood"]
  assert likelihood["nats_per_event"] == likelihood["nats_per_row"]
  assert 0 < likelihood["notes"] < likelihood["rows"]  # note-on events among all events
  assert likelihood["nats_per_note"] > likelihood["nats_per_row"]
  # the 128 note-on events' embeddings stand in for the pitch field
  assert report["embeddings"]["event"]["input_octave"]["num_octave_pairs"] == 2 * 116
  assert len(report["music_metrics"]["files"]["samples"]) == 2
  written = json.loads((tmp_path / "out" / "report.json").read_text())
  assert written["run"]["representation"] == "performance"
  assert (tmp_path / "out" / "report.html").is_file()
  assert any(line.startswith("likelihood of") for line in lines)
