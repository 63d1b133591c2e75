"""Training curves read back from real tensorboardX event files, damaged ones included."""

from __future__ import annotations

import numpy as np
import pytest

from mtx.evaluate import curves
from mtx.train.summary import Summary

TRAIN = {  # step -> the scalars the training loop logs at it
  2: {
    "loss": 5.5,
    "loss/pitch": 3.25,
    "loss/beat": 2.25,
    "accuracy/pitch": 0.125,
    "learning_rate": 1e-3,
    "tokens_per_second": 1234.5,
    "grad_norm": 2.0,
  },
  4: {
    "loss": 4.5,
    "loss/pitch": 2.75,
    "loss/beat": 1.75,
    "accuracy/pitch": 0.25,
    "learning_rate": 2e-3,
    "tokens_per_second": 1300.0,
    "grad_norm": 1.5,
  },
  6: {
    "loss": 3.5,
    "loss/pitch": 2.0,
    "loss/beat": 1.5,
    "accuracy/pitch": 0.5,
    "learning_rate": 3e-3,
    "tokens_per_second": 1400.0,
    "grad_norm": 1.0,
  },
}
EVAL = {
  4: {"loss": 4.75, "loss/pitch": 2.875, "loss/beat": 1.875, "accuracy/pitch": 0.2},
  6: {"loss": 3.75, "loss/pitch": 2.125, "loss/beat": 1.625, "accuracy/pitch": 0.4},
}


def _write_run(workdir) -> None:
  summary = Summary(workdir)
  for step in sorted(set(TRAIN) | set(EVAL)):
    if step in TRAIN:
      summary.scalars(step, "train", TRAIN[step])
    if step in EVAL:
      summary.scalars(step, "eval", EVAL[step])
  summary.text(0, "config", "a text summary, not a scalar")
  summary.close()


def _expected() -> dict[str, dict[int, float]]:
  expected: dict[str, dict[int, float]] = {}
  for prefix, logged in (("train", TRAIN), ("eval", EVAL)):
    for step, values in logged.items():
      for name, value in values.items():
        expected.setdefault(f"{prefix}/{name}", {})[step] = float(np.float32(value))
  return expected


def _as_dicts(scalars) -> dict[str, dict[int, float]]:
  return {
    tag: dict(zip(steps.tolist(), values.tolist())) for tag, (steps, values) in scalars.items()
  }


def _event_file(workdir):
  (path,) = (workdir / "tensorboard").glob("events.out.tfevents.*")
  return path


@pytest.fixture
def run_dir(tmp_path):
  _write_run(tmp_path)
  return tmp_path


def test_scalars_read_back_equal_to_what_the_summary_wrote(run_dir):
  scalars = curves.read_scalars(run_dir / "tensorboard")
  assert _as_dicts(scalars) == _expected()
  steps, values = scalars["train/loss"]
  assert steps.dtype == np.int64 and values.dtype == np.float64


def test_training_curves_group_loss_per_field_learning_rate_and_speed(run_dir):
  grouped = curves.training_curves(run_dir)
  assert grouped and not grouped.empty
  assert set(grouped.loss) == {"train", "eval"}
  assert set(grouped.loss["train"]) == {"total", "pitch", "beat"}
  assert grouped.loss["eval"]["total"][0].tolist() == [4, 6]
  assert grouped.accuracy["train"]["pitch"][1].tolist() == [0.125, 0.25, 0.5]
  assert grouped.learning_rate[0].tolist() == [2, 4, 6]
  assert grouped.tokens_per_second[1].tolist() == [1234.5, 1300.0, 1400.0]
  assert set(grouped.other) == {"train/grad_norm"}
  assert curves.summarize(grouped) == {
    "last_step": 6,
    "last_train_loss": 3.5,
    "best_eval_loss": 3.75,
    "best_eval_step": 6,
    "last_eval_loss": 3.75,
    "median_tokens_per_second": 1300.0,
  }


@pytest.mark.parametrize("damage", ["cut_last_record", "cut_in_header", "zero_filled_tail"])
def test_a_damaged_tail_keeps_the_records_before_it(run_dir, damage):
  path = _event_file(run_dir)
  data = path.read_bytes()
  # The file ends with the text summary, written after the last scalar (eval/accuracy/
  # pitch at step 6). Cutting into that scalar's record loses it and the text; cutting
  # into the text record's header, or a zero-filled tail, loses no scalar.
  if damage == "cut_last_record":
    text_record = len(data) - _last_record_length(data)
    data = data[: text_record - 3]
  elif damage == "cut_in_header":
    data = data[: len(data) - _last_record_length(data) + 5]
  else:
    data = data + b"\0" * 64
  path.write_bytes(data)
  expected = _expected()
  if damage == "cut_last_record":
    del expected["eval/accuracy/pitch"][6]
  assert _as_dicts(curves.read_scalars(run_dir / "tensorboard")) == expected


def _last_record_length(data: bytes) -> int:
  """Bytes of the file's last TFRecord (header, payload, footer)."""
  import struct

  offset, last = 0, 0
  while offset < len(data):
    (length,) = struct.unpack_from("<Q", data, offset)
    last = 12 + length + 4
    offset += last
  return last


def test_a_resumed_run_takes_the_later_value_of_a_replayed_step(tmp_path):
  from tensorboardX import SummaryWriter

  first = SummaryWriter(str(tmp_path / "tensorboard"), filename_suffix=".a")
  for step, loss in ((1, 3.0), (2, 2.5), (3, 2.25)):
    first.add_scalar("train/loss", loss, global_step=step)
  first.close()
  resumed = SummaryWriter(str(tmp_path / "tensorboard"), filename_suffix=".b")
  for step, loss in ((3, 2.0), (4, 1.5)):
    resumed.add_scalar("train/loss", loss, global_step=step)
  resumed.close()
  steps, values = curves.read_scalars(tmp_path / "tensorboard")["train/loss"]
  assert steps.tolist() == [1, 2, 3, 4]
  assert values.tolist() == [3.0, 2.5, 2.0, 1.5]


def test_a_missing_or_empty_directory_gives_empty_curves(tmp_path):
  assert curves.read_scalars(tmp_path / "nowhere") == {}
  grouped = curves.training_curves(tmp_path / "nowhere")
  assert grouped.empty and not grouped
  assert curves.summarize(grouped) == {}
  (tmp_path / "tensorboard").mkdir()
  assert curves.training_curves(tmp_path).empty


def test_a_file_that_is_not_an_event_file_is_ignored(tmp_path):
  folder = tmp_path / "tensorboard"
  folder.mkdir()
  (folder / "events.out.tfevents.0.garbage").write_bytes(np.random.default_rng(0).bytes(500))
  (folder / "events.out.tfevents.1.empty").write_bytes(b"")
  assert curves.read_scalars(folder) == {}
