"""The sampler's limits mtx-prepare writes beside the records equal a scan of every song,
and a run takes them from that file (so a run on a bucket does not read every song)."""

from __future__ import annotations

import json
from pathlib import Path

from mtx.data.split_limits import LIMITS_FILE, read_limits, scan_limits
from mtx.sample.restore import data_limits
from mtx.train.data import PreparedData
from tests.train.helpers import small_config


def test_the_prepared_limits_equal_a_scan_of_every_split(prepared_dir):
  data = PreparedData(small_config(prepared_dir).data)
  written = json.loads((Path(data.location) / LIMITS_FILE).read_text())["splits"]
  assert sorted(written) == sorted(s for s, n in data.splits.items() if n)
  for split in written:
    scanned = scan_limits(data.codec, data.source(split))
    assert written[split] == scanned and scanned["songs"] == data.splits[split]
    assert scanned["longest_song"] > 0 and scanned["max_time_jump"] > 0


def test_a_run_reads_the_file_and_scans_without_it(prepared_dir, tmp_path):
  import shutil

  copy = tmp_path / "data"
  shutil.copytree(prepared_dir, copy)
  data = PreparedData(small_config(copy).data)
  path = Path(data.location) / LIMITS_FILE
  scanned = scan_limits(data.codec, data.source("train"))
  marked = dict(scanned, longest_song=scanned["longest_song"] + 1000)
  path.write_text(json.dumps({"splits": {"train": marked}}))
  assert data_limits(data, "train") == marked  # the file, not a scan
  assert read_limits(data.location, "validation") is None  # not in the file
  path.unlink()
  assert data_limits(data, "train") == scanned  # a dataset prepared before the file
