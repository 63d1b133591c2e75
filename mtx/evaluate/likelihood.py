"""Likelihood of a whole split: NLL and accuracy per field, every row scored once.

    plans = plan_windows(num_rows=len(tokens), seq_len=256, stride=128)
    totals = LikelihoodTotals(codec)
    for batch in window_batches(codec, songs, seq_len=256, stride=128, batch_size=8):
      nll, correct = score(params, batch)          # make_scorer(model_of)
      totals.add(batch, nll, correct)
    report = totals.result()

Windows. A song of n rows has n - 1 targets (row 0, start-of-song, is given, as in
training and in MMT). A model sees `seq_len` input rows at a time, so a long song is
covered by windows that advance `stride` rows: the first window scores its targets
1..seq_len; every later one is placed so that it ends on the last row it scores and
scores only rows no earlier window scored, so each row is scored exactly once, with
at least seq_len - stride rows of context (as the sliding-window perplexity of
language models is computed). A song that fits one window is scored by that window
whatever the stride. Rows whose prediction saw less than all of the song before them
(up to seq_len rows) are counted in `truncated_context_rows`: the rows of every window
after the first.

mmt windows after the first start with the song's header (start-of-song, its
instrument rows, start-of-notes), then note rows with their beats rebased so the
window's first note sits on beat 0: the shape of every training window
(`mtx.data.crop.crop_mmt`), so the model is never scored on a window it could not have
been trained on. The header counts as context. The single-field representations
(performance, remi, mmm) are windowed as plain runs of events, as Music Transformer
evaluates performance events.

Which predictions count: a target row's field f counts where the codec's
`field_mask_table()` says f means something for that row's type (mmt: every field of a
note, type and instrument of an instrument row, the type of the other rows; every field
always for single-field codecs), exactly as the training loss counts them
(`mtx.model.loss`). Padding never counts.

Figures (`LikelihoodTotals.result`), all in nats unless named bits:
- `fields[f]`: mean NLL, accuracy (argmax equals target) and count over the rows where
  f counts.
- `loss`: the sum over fields of those means: what `mtx-train` logs as eval/loss.
- `nats_per_row`: every counted field's NLL summed over all scored rows, divided by
  the number of scored rows (the log-likelihood of the split per row); `nats_per_note`
  divides the same sum by the number of notes among the scored rows (mmt note rows; the
  note-on events of performance and mmm; the pitch events of remi), a figure that
  compares across representations; `nats_per_event` (single-field codecs) equals
  `nats_per_row`: Music Transformer's figure. Each also in bits (/ ln 2).
- `mmt_reference_loss` (mmt only): the number MMT's training code prints as its
  validation loss: the sum over the six fields of each field's mean cross-entropy over
  every target row, no field mask, so the forced zeros of non-note rows count
  (`MusicAutoregressiveWrapper.forward`: `F.cross_entropy` per field, ignore_index -100
  which never occurs, so nothing is left out). Differences that remain, stated in the
  report: MMT averages batch losses of 8 songs (each truncated to 1024 rows and 256
  beats) and its padding rows, all zeros, count as targets in those means; here each row
  of the split counts once and padding never. MMT also logs its per-field validation
  losses divided by 4 (`count += len(batch)` counts the 4 keys of its batch dict), so
  its printed per-field figures are a quarter of the per-field means here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from mtx.data.window import pad_row
from mtx.errors import ConfigError
from mtx.representation.codec import Codec

# Events that are notes, per single-field representation (for nats per note).
NOTE_EVENTS = {"performance": "note-on", "remi": "pitch", "mmm": "note-on"}


@dataclasses.dataclass(frozen=True)
class WindowPlan:
  """One window over a song: body rows start..(start + body - 1) follow `prefix` rows;
  the song rows first_scored..last_scored (inclusive) are the targets it scores."""

  start: int
  first_scored: int
  last_scored: int
  prefix: int = 0


def plan_windows(num_rows: int, seq_len: int, stride: int, prefix: int = 0) -> list[WindowPlan]:
  """Windows that score every target row 1..num_rows-1 once (see the module docstring).

  `prefix`: rows (the mmt header) placed before the body of every window but the first;
  the body of such a window then holds seq_len + 1 - prefix song rows, its first one
  predicted from the prefix alone.
  """
  if seq_len < 1:
    raise ConfigError(f"seq_len must be positive, got {seq_len}")
  if stride < 1:
    raise ConfigError(f"--stride must be positive, got {stride}")
  last = num_rows - 1
  if last < 1:
    return []
  plans = [WindowPlan(start=0, first_scored=1, last_scored=min(seq_len, last))]
  capacity = seq_len + 1 - prefix  # song rows a later window holds
  if capacity < 2:
    raise ConfigError(
      f"a window of {seq_len} rows cannot hold the song's {prefix}-row "
      "header and a note: raise seq_len"
    )
  step = min(stride, capacity - 1)
  next_row = plans[0].last_scored + 1
  while next_row <= last:
    end = min(next_row + step - 1, last)
    plans.append(
      WindowPlan(start=end - capacity + 1, first_scored=next_row, last_scored=end, prefix=prefix)
    )
    next_row = end + 1
  return plans


def mmt_header_rows(tokens: np.ndarray) -> int:
  """Rows up to and including start-of-notes (0 when there is none)."""
  from mtx.representation.mmt import START_OF_NOTES, TYPE

  opens = np.flatnonzero(tokens[:, TYPE] == START_OF_NOTES)
  return int(opens[0]) + 1 if opens.size else 0


def window_rows(codec: Codec, tokens: np.ndarray, plan: WindowPlan) -> np.ndarray:
  """The rows of one window: prefix + body, at most seq_len + 1 of them."""
  if plan.start == 0 or not plan.prefix:
    return tokens[plan.start : plan.last_scored + 1]
  body = tokens[plan.start : plan.last_scored + 1].copy()
  if codec.name == "mmt":
    from mtx.representation.mmt import BEAT, NOTE, TYPE

    notes = body[:, TYPE] == NOTE
    if notes.any():
      body[notes, BEAT] -= body[notes, BEAT].min() - 1
  return np.concatenate([tokens[: plan.prefix], body])


def song_prefix(codec: Codec, tokens: np.ndarray) -> int:
  """Rows every later window of this song starts with (the mmt header; 0 otherwise)."""
  return mmt_header_rows(tokens) if codec.name == "mmt" else 0


@dataclasses.dataclass
class WindowBatch:
  """A batch of windows: the model's inputs and what to score.

  inputs, targets (B, L, F) int32; positions, segment_ids (B, L) int32 (segment 1 on
  real rows, 0 on padding, as training batches); scored (B, L) bool (targets this batch
  scores); context (B, L) int32 (rows of context of each target); song (B,) int (index
  of the song, -1 for filler windows)."""

  inputs: np.ndarray
  targets: np.ndarray
  positions: np.ndarray
  segment_ids: np.ndarray
  scored: np.ndarray
  context: np.ndarray
  truncated: np.ndarray
  song: np.ndarray

  def model_inputs(self) -> dict[str, np.ndarray]:
    return {"inputs": self.inputs, "positions": self.positions, "segment_ids": self.segment_ids}


def _window_example(
  codec: Codec, tokens: np.ndarray, plan: WindowPlan, seq_len: int, pad: np.ndarray
) -> dict[str, np.ndarray]:
  rows = window_rows(codec, tokens, plan)
  filled = np.empty((seq_len + 1, pad.size), np.int32)
  filled[:] = pad
  filled[: len(rows)] = rows
  real = np.arange(seq_len) < len(rows) - 1
  body_offset = plan.prefix if plan.start and plan.prefix else 0
  # Target position t predicts window row t + 1, which is song row start + t + 1 - offset.
  song_row = plan.start + np.arange(seq_len) + 1 - body_offset
  scored = real & (song_row >= plan.first_scored) & (song_row <= plan.last_scored)
  context = np.arange(1, seq_len + 1, dtype=np.int32)
  return {
    "inputs": filled[:-1],
    "targets": filled[1:],
    "scored": scored,
    "positions": np.where(real, np.arange(seq_len), 0).astype(np.int32),
    "segment_ids": real.astype(np.int32),
    "context": context,
    "truncated": scored & (context < np.minimum(song_row, seq_len)),
  }


def window_batches(
  codec: Codec, songs: Iterable[np.ndarray], *, seq_len: int, stride: int, batch_size: int
) -> Iterator[WindowBatch]:
  """Every window of every song, `batch_size` at a time, in song order; the last batch
  is filled with windows that score nothing, so every batch has one shape."""
  pad = pad_row(codec)
  pending: list[tuple[int, dict]] = []

  def flush(items):
    while len(items) < batch_size:
      empty = {
        "inputs": np.broadcast_to(pad, (seq_len, pad.size)),
        "targets": np.broadcast_to(pad, (seq_len, pad.size)),
        "scored": np.zeros(seq_len, bool),
        "positions": np.zeros(seq_len, np.int32),
        "segment_ids": np.zeros(seq_len, np.int32),
        "context": np.zeros(seq_len, np.int32),
        "truncated": np.zeros(seq_len, bool),
      }
      items.append((-1, empty))
    stack = {k: np.stack([example[k] for _, example in items]) for k in items[0][1]}
    return WindowBatch(song=np.array([s for s, _ in items]), **stack)

  for index, tokens in enumerate(songs):
    tokens = np.asarray(tokens, np.int32).reshape(-1, codec.n_fields)
    for plan in plan_windows(len(tokens), seq_len, stride, song_prefix(codec, tokens)):
      pending.append((index, _window_example(codec, tokens, plan, seq_len, pad)))
      if len(pending) == batch_size:
        yield flush(pending)
        pending = []
  if pending:
    yield flush(pending)


def token_nll(logits: Sequence[Any], targets: Any) -> tuple[Any, Any]:
  """Per-token NLL and correctness from one (B, L, size_f) logit array per field:
  (nll (B, L, F) float32, correct (B, L, F) bool). jax arrays in, jax arrays out."""
  import jax
  import jax.numpy as jnp

  nll, correct = [], []
  for f, field_logits in enumerate(logits):
    field_logits = field_logits.astype(jnp.float32)
    target = targets[..., f]
    log_probs = jax.nn.log_softmax(field_logits, axis=-1)
    nll.append(-jnp.take_along_axis(log_probs, target[..., None], axis=-1)[..., 0])
    correct.append(jnp.argmax(field_logits, axis=-1) == target)
  return jnp.stack(nll, axis=-1), jnp.stack(correct, axis=-1)


def make_scorer(model_of: Callable[[Any], Any], batch_sharding=None):
  """A jitted (params, batch dict) -> (nll, correct) over a batch of windows
  (`WindowBatch.model_inputs()` plus "targets"); deterministic (no dropout)."""
  import jax

  def score(params, batch):
    logits, _ = model_of(params)(
      batch["inputs"],
      positions=batch["positions"],
      segment_ids=batch["segment_ids"],
      deterministic=True,
    )
    return token_nll(logits, batch["targets"])

  if batch_sharding is None:
    return jax.jit(score)
  return jax.jit(score, in_shardings=(None, batch_sharding))


class LikelihoodTotals:
  """Sums over scored target rows, in float64 and a fixed order (so the figures are
  the same bytes on every run); `result()` turns them into the report's figures."""

  def __init__(self, codec: Codec, seq_len: int):
    self.codec = codec
    self.seq_len = seq_len
    n = codec.n_fields
    self.table = codec.field_mask_table()
    self.nll = np.zeros(n)  # masked sums
    self.correct = np.zeros(n)
    self.count = np.zeros(n)
    self.nll_unmasked = np.zeros(n)
    self.rows = 0
    self.notes = 0
    self.truncated_rows = 0
    self.min_context = seq_len
    self.song_nll: dict[int, float] = {}
    self.song_rows: dict[int, int] = {}

  def weights(self, targets: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(B, L, F) bool: field f of target (b, l) counts."""
    counted = np.broadcast_to(scored[..., None], targets.shape)
    if self.table is not None:
      counted = counted & self.table[np.clip(targets[..., 0], 0, self.table.shape[0] - 1)]
    return counted

  def is_note(self, targets: np.ndarray) -> np.ndarray:
    if self.codec.name == "mmt":
      from mtx.representation.mmt import NOTE, TYPE

      return targets[..., TYPE] == NOTE
    kind = NOTE_EVENTS.get(self.codec.name)
    vocab = getattr(self.codec, "vocab", None)
    if kind is None or vocab is None:
      return np.zeros(targets.shape[:-1], bool)
    kinds, _ = vocab.split(targets[..., 0])
    return kinds == vocab.names.index(kind)

  def add(self, batch: WindowBatch, nll: np.ndarray, correct: np.ndarray) -> None:
    nll = np.asarray(nll, np.float64)
    correct = np.asarray(correct, bool)
    scored = batch.scored
    weights = self.weights(batch.targets, scored)
    self.nll += (nll * weights).sum(axis=(0, 1))
    self.correct += (correct & weights).sum(axis=(0, 1))
    self.count += weights.sum(axis=(0, 1))
    self.nll_unmasked += (nll * scored[..., None]).sum(axis=(0, 1))
    self.rows += int(scored.sum())
    self.notes += int((self.is_note(batch.targets) & scored).sum())
    self.truncated_rows += int(batch.truncated.sum())
    if batch.truncated.any():
      self.min_context = min(self.min_context, int(batch.context[batch.truncated].min()))
    per_window = (nll * weights).sum(axis=(1, 2))
    for b, song in enumerate(batch.song.tolist()):
      if song < 0:
        continue
      self.song_nll[song] = self.song_nll.get(song, 0.0) + float(per_window[b])
      self.song_rows[song] = self.song_rows.get(song, 0) + int(scored[b].sum())

  def result(self) -> dict:
    names = self.codec.fields.names
    fields = {}
    for f, name in enumerate(names):
      count = self.count[f]
      fields[name] = {
        "nll": self.nll[f] / count if count else math.nan,
        "accuracy": self.correct[f] / count if count else math.nan,
        "count": int(count),
      }
    total = float(self.nll.sum())
    rows, notes = self.rows, self.notes
    out = {
      "rows": rows,
      "notes": notes,
      "truncated_context_rows": self.truncated_rows,
      "min_truncated_context": self.min_context if self.truncated_rows else None,
      "fields": fields,
      "loss": float(sum(v["nll"] for v in fields.values() if v["count"])),
      "nats_per_row": total / rows if rows else math.nan,
      "nats_per_note": total / notes if notes else math.nan,
    }
    out["bits_per_row"] = out["nats_per_row"] / math.log(2)
    out["bits_per_note"] = out["nats_per_note"] / math.log(2)
    if self.codec.n_fields == 1:
      out["nats_per_event"] = out["nats_per_row"]
      out["bits_per_event"] = out["bits_per_row"]
    if self.codec.name == "mmt" and rows:
      out["mmt_reference_loss"] = float((self.nll_unmasked / rows).sum())
      out["mmt_reference_fields"] = {
        name: float(self.nll_unmasked[f] / rows) for f, name in enumerate(names)
      }
    out["songs"] = [
      {
        "song": s,
        "rows": self.song_rows[s],
        "nats_per_row": self.song_nll[s] / self.song_rows[s] if self.song_rows[s] else math.nan,
      }
      for s in sorted(self.song_nll)
    ]
    return out


DEFINITIONS = {
  "likelihood.fields.nll": "Mean negative log-likelihood (nats) of the field over the "
  "target rows where the field means something for the row's "
  "type (the codec's field mask), as the training loss counts it.",
  "likelihood.fields.accuracy": "Fraction of those targets whose most likely value (argmax) "
  "is the target.",
  "likelihood.loss": "Sum over fields of the per-field mean NLL: what mtx-train logs as eval/loss.",
  "likelihood.nats_per_row": "Every counted field's NLL summed over all scored rows, divided "
  "by the number of scored rows (nats per row; bits: / ln 2).",
  "likelihood.nats_per_note": "The same sum divided by the number of notes among the scored "
  "rows (mmt note rows; note-on events of performance and mmm; "
  "pitch events of remi): comparable across representations.",
  "likelihood.nats_per_event": "Single-field representations: nats per event, Music "
  "Transformer's figure (equals nats_per_row).",
  "likelihood.mmt_reference_loss": (
    "mmt only: MMT's printed validation loss: the sum over the six fields of each field's "
    "mean cross-entropy over every target row, no field mask (the forced zeros of non-note "
    "rows count). MMT averages batches of 8 songs truncated to 1024 rows and 256 beats, and "
    "its all-zero padding rows count as targets; here every row of the split counts once "
    "and padding never. MMT's printed per-field losses are a quarter of its true per-field "
    "means (it divides by 4 times the number of batches: len() of its 4-key batch dict)."
  ),
  "likelihood.rows": "Target rows scored: every row of every song of the split but its "
  "first (start-of-song), each exactly once.",
  "likelihood.truncated_context_rows": (
    "Scored rows whose prediction saw fewer rows than the song has before them (up to "
    "seq_len): history cut off by the windowing, at least seq_len - stride rows kept. "
    "min_truncated_context: the fewest rows such a prediction saw (the mmt header "
    "included)."
  ),
  "likelihood.windows": (
    "Songs longer than the model's window are covered by windows of seq_len rows advancing "
    "by the stride; each row is scored once, in the window where it has the most context "
    "(at least seq_len - stride rows after the first window). mmt windows after the first "
    "start with the song's header and rebased beats, the shape of every training window."
  ),
}


def split_likelihood(
  model_of: Callable[[Any], Any],
  params: Any,
  codec: Codec,
  songs: Sequence[np.ndarray],
  *,
  seq_len: int,
  stride: int,
  batch_size: int,
  batch_sharding=None,
  progress: Callable[[int], None] | None = None,
) -> dict:
  """The figures of `LikelihoodTotals.result` over `songs` (token arrays), scored by
  the model `model_of(params)` window by window. `batch_size` windows per call (a
  multiple of the devices `batch_sharding` spreads them over); `progress(windows)`
  after each batch."""
  import jax

  scorer = make_scorer(model_of, batch_sharding)
  totals = LikelihoodTotals(codec, seq_len)
  done = 0
  for batch in window_batches(codec, songs, seq_len=seq_len, stride=stride, batch_size=batch_size):
    inputs = dict(batch.model_inputs(), targets=batch.targets)
    if batch_sharding is not None:
      inputs = jax.device_put(inputs, batch_sharding)
    nll, correct = jax.device_get(scorer(params, inputs))
    totals.add(batch, nll, correct)
    done += int((batch.song >= 0).sum())
    if progress is not None:
      progress(done)
  result = totals.result()
  result["seq_len"] = seq_len
  result["stride"] = stride
  result["songs_scored"] = len(songs)
  return result
