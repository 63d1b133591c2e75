"""A run's training curves, read back from the TensorBoard event files it wrote.

`mtx.train.summary` writes scalars with tensorboardX under `<workdir>/tensorboard`
(`train/loss`, `train/loss/<field>`, `train/accuracy/<field>`, `train/learning_rate`,
`train/tokens_per_second`, `eval/loss`, ...). They are read here without TensorFlow:
the TFRecord framing is parsed directly and the records are tensorboardX's `Event`
protos. A run killed mid-write leaves a truncated last record, and a run still
training is appending to its file, so a damaged record ends the reading of that file
and keeps what came before: a report of a live or crashed run is still a report.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

Series = tuple[np.ndarray, np.ndarray]  # (steps int64 (n,), values float64 (n,)), by step

_HEADER = struct.Struct("<QI")  # record length, masked CRC-32C of the length
_FOOTER = struct.Struct("<I")  # masked CRC-32C of the record
_FLOAT_DTYPES = {1: np.float32, 2: np.float64}  # TensorFlow's DT_FLOAT, DT_DOUBLE


def _event_files(event_dir: Path) -> list[Path]:
  return sorted(p for p in event_dir.rglob("events.out.tfevents.*") if p.is_file())


def _records(data: bytes) -> Iterator[bytes]:
  """The intact records of one TFRecord file, up to the first damaged one.

  Both CRCs are checked: a zero-filled or torn tail (a crash between the write and the
  flush) fails them, where a length check alone would read garbage as a record.
  """
  from tensorboardX.record_writer import masked_crc32c

  offset = 0
  while offset + _HEADER.size <= len(data):
    length, length_crc = _HEADER.unpack_from(data, offset)
    if masked_crc32c(data[offset : offset + 8]) != length_crc:
      return
    start = offset + _HEADER.size
    end = start + length
    if end + _FOOTER.size > len(data):
      return
    record = data[start:end]
    if masked_crc32c(record) != _FOOTER.unpack_from(data, end)[0]:
      return
    yield record
    offset = end + _FOOTER.size


def _scalar(value) -> float | None:
  """The number a `Summary.Value` holds: `simple_value` (tensorboardX's add_scalar) or a
  one-element float tensor (new-style scalars); None for text, images, histograms."""
  kind = value.WhichOneof("value")
  if kind == "simple_value":
    return float(value.simple_value)
  if kind != "tensor" or value.tensor.dtype not in _FLOAT_DTYPES:
    return None
  tensor = value.tensor
  if tensor.tensor_content:
    numbers = np.frombuffer(tensor.tensor_content, _FLOAT_DTYPES[tensor.dtype])
  else:
    numbers = np.asarray(list(tensor.float_val) or list(tensor.double_val), np.float64)
  return float(numbers[0]) if numbers.size == 1 else None


def read_scalars(event_dir: str | os.PathLike) -> dict[str, Series]:
  """Tag -> (steps, values) from every event file under `event_dir`, sorted by step.

  A run resumed from a checkpoint writes a new event file and logs again the steps
  after that checkpoint; where two events give one tag and step, the later one (by
  wall time) wins, as it is the run that went on. A missing directory or one without
  events gives {}.
  """
  from google.protobuf.message import DecodeError
  from tensorboardX.proto import event_pb2

  event_dir = Path(event_dir)
  if not event_dir.is_dir():
    return {}
  points: dict[str, list[tuple[float, int, int, float]]] = {}
  order = 0  # ties in wall time: file order, then record order
  for path in _event_files(event_dir):
    for record in _records(path.read_bytes()):
      try:
        event = event_pb2.Event.FromString(record)
      except DecodeError:  # framed and checksummed, yet not an Event: not ours
        break
      for value in event.summary.value:
        number = _scalar(value)
        if number is not None:
          points.setdefault(value.tag, []).append((event.wall_time, order, event.step, number))
          order += 1
  scalars = {}
  for tag in sorted(points):
    by_step = {step: number for _, _, step, number in sorted(points[tag])}
    steps = np.array(sorted(by_step), np.int64)
    scalars[tag] = (steps, np.array([by_step[s] for s in steps.tolist()], np.float64))
  return scalars


@dataclasses.dataclass(frozen=True)
class TrainingCurves:
  """A run's scalars grouped the way the report plots them.

  `loss` and `accuracy` map a split ("train", "eval") to field -> series, the summed
  loss under "total"; `other` keeps every scalar not placed elsewhere (gradient norm,
  MFU, ...) under its full tag.
  """

  loss: dict[str, dict[str, Series]]
  accuracy: dict[str, dict[str, Series]]
  learning_rate: Series | None
  tokens_per_second: Series | None
  other: dict[str, Series]

  @property
  def empty(self) -> bool:
    return not (
      self.loss
      or self.accuracy
      or self.other
      or self.learning_rate is not None
      or self.tokens_per_second is not None
    )

  def __bool__(self) -> bool:  # `if not curves:` reads as "the run logged nothing"
    return not self.empty


def group_curves(scalars: dict[str, Series]) -> TrainingCurves:
  """Places `read_scalars`' tags: `<split>/loss[/<field>]`, `<split>/accuracy/<field>`,
  `train/learning_rate`, `train/tokens_per_second`; anything else goes to `other`."""
  loss: dict[str, dict[str, Series]] = {}
  accuracy: dict[str, dict[str, Series]] = {}
  learning_rate = tokens_per_second = None
  other: dict[str, Series] = {}
  for tag, series in scalars.items():
    split, _, name = tag.partition("/")
    metric, _, field = name.partition("/")
    if tag == "train/learning_rate":
      learning_rate = series
    elif tag == "train/tokens_per_second":
      tokens_per_second = series
    elif metric == "loss" and split:
      loss.setdefault(split, {})[field or "total"] = series
    elif metric == "accuracy" and field and split:
      accuracy.setdefault(split, {})[field] = series
    else:
      other[tag] = series
  return TrainingCurves(
    loss=loss,
    accuracy=accuracy,
    learning_rate=learning_rate,
    tokens_per_second=tokens_per_second,
    other=other,
  )


def training_curves(workdir: str | os.PathLike) -> TrainingCurves:
  """The curves of the run in `workdir` (its `tensorboard` folder); empty, not an
  error, where the run wrote none (summaries off, or not started)."""
  return group_curves(read_scalars(Path(workdir) / "tensorboard"))


def summarize(curves: TrainingCurves) -> dict:
  """The figures of the curves the JSON report keeps: where training ended and the
  best validation loss, so a run is judged without opening the plot. {} when empty."""
  summary: dict = {}
  train = curves.loss.get("train", {}).get("total")
  if train is not None and train[0].size:
    summary["last_step"] = int(train[0][-1])
    summary["last_train_loss"] = float(train[1][-1])
  valid = curves.loss.get("eval", {}).get("total")
  if valid is not None and valid[0].size:
    finite = np.where(np.isfinite(valid[1]), valid[1], np.inf)
    best = int(np.argmin(finite))
    summary["best_eval_loss"] = float(valid[1][best])
    summary["best_eval_step"] = int(valid[0][best])
    summary["last_eval_loss"] = float(valid[1][-1])
  if curves.tokens_per_second is not None and curves.tokens_per_second[0].size:
    summary["median_tokens_per_second"] = float(np.median(curves.tokens_per_second[1]))
  return summary
