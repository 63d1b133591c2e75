"""The analyses of `mtx-eval`, one function each: a restored run, the split's songs and
the options in, the analysis's section of the report (plain numbers and strings) and the
figures it drew out. The math lives in the analyses' own modules (likelihood,
music_metrics, distances, attention_analysis, embeddings, curves); this module runs them on
a trained run and draws their figures. `evaluator.evaluate` calls them in order.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtx.evaluate.samples import Piece

if TYPE_CHECKING:
  from mtx.evaluate.evaluator import EvalOptions, Split

# Fields the attention analysis measures distances in, and the ones it treats as
# categories (MMT's analysis: beat, position, pitch; instrument as categories).
ORDERED_FIELDS = ("beat", "position", "pitch")
CATEGORY_FIELDS = ("instrument",)
PIECES_SHOWN = 4  # piano rolls of samples and of ground-truth songs in the report
MAX_SIMILARITY_CODES = 129  # a similarity plot shows at most this many codes of a field


def _batch_size(options: EvalOptions, run) -> int:
  import jax

  t = run.config.train
  size = options.batch_size or int(t.eval_batch_size or t.batch_size)
  devices = jax.device_count()
  return max(devices, -(-size // devices) * devices)


def likelihood_section(run, split: Split, options: EvalOptions, log) -> dict:
  from mtx.evaluate import likelihood
  from mtx.train.sharding import batch_sharding

  seq_len = int(run.config.data.seq_len)
  stride = options.stride or max(1, seq_len // 2)
  start = time.perf_counter()
  result = likelihood.split_likelihood(
    run.setup.model,
    run.params,
    run.codec,
    split.tokens,
    seq_len=seq_len,
    stride=stride,
    batch_size=_batch_size(options, run),
    batch_sharding=batch_sharding(run.setup.mesh),
  )
  elapsed = time.perf_counter() - start
  for song in result["songs"]:
    song["name"] = split.names[song.pop("song")]
  log(
    f"likelihood of {len(split.tokens)} {split.name} songs ({result['rows']:,} rows): "
    f"{result['nats_per_row']:.4f} nats/row, {result['rows'] / elapsed:,.0f} rows/s"
  )
  return result


def sample_pieces(
  run, options: EvalOptions, out: Path, log, given=None
) -> tuple[list[Piece], list, dict]:
  """The samples to measure, the files skipped, and how they were made; `given`: what
  `read_samples_dir` found in --samples_dir."""
  from mtx.evaluate import samples

  if given is not None:
    pieces, bad = given
    for name, reason in bad:
      log(f"skipped {name}: {reason}")
    return pieces, bad, {"source": "samples_dir", "samples_dir": options.samples_dir}
  from mtx.sample.decode import options_for, sample_defaults
  from mtx.sample.restore import sampling_limits

  # The run's own sampling defaults (config.sample: what mtx-sample draws with), which are
  # MMT's evaluation settings unless the run's config changed them; or MMT's, asked for.
  if options.sampling == "mmt":
    sampling = samples.mmt_evaluation_sampling(run.codec)
  else:
    sampling = options_for(
      run.codec.fields.sizes, **sample_defaults(run.config, run.codec.fields.names)
    )
  mmt_like = sampling == samples.mmt_evaluation_sampling(run.codec)
  limits = sampling_limits(run, max_length=options.sample_length, warn=log)
  start = time.perf_counter()
  drawn = samples.draw_samples(
    run,
    num_samples=options.num_samples,
    limits=limits,
    seed=options.seed,
    options=sampling,
    batch_size=_batch_size(options, run),
  )
  elapsed = time.perf_counter() - start
  rows = sum(len(s) for s in drawn)
  log(f"drew {len(drawn)} samples ({rows:,} rows, {rows / elapsed:,.0f} rows/s)")
  pieces = []
  for index, tokens in enumerate(drawn):
    name = f"sample_{index:03d}"
    piece = samples.decode_piece(run.codec, tokens, name)
    stem = out / "drawn_samples" / name
    np.save(f"{stem}.npy", tokens)
    run.codec.decode(tokens).dump(f"{stem}.mid")
    piece.midi = f"{stem}.mid"
    pieces.append(piece)
  settings = {
    "source": "drawn",
    "num_samples": options.num_samples,
    "sample_length": limits.max_length,
    "seed": options.seed,
    "start": "unconditioned (start-of-song)",
    "temperature": list(sampling.temperature),
    "top_k": list(sampling.top_k),
    "top_p": list(sampling.top_p),
    "window": limits.window,
    "max_time_jump": limits.max_time_jump,
    "max_first_time": limits.max_first_time,
    "max_onset_notes": limits.max_onset_notes,
    "max_silence": limits.max_silence,
    "limits_from": limits.source,
    "filter": ("--sampling=mmt, " if options.sampling == "mmt" else "the run's config.sample, ")
    + (
      "MMT's evaluate.py settings: temperature 1, x-transformers top_k at threshold 0.9 "
      "(k = ceil(0.1 V) per field)"
      if mmt_like
      else "NOT MMT's evaluation settings "
      "(temperature 1, k = ceil(0.1 V) per field): the run's config changed them"
    ),
    "matches": "MMT's evaluate.py draws 1024 rows unconditioned; mtx's grammar takes the "
    "place of MMT's monotonicity masks, with mtx-sample's limits from the training "
    "data and its window (the training seq_len in view)",
  }
  return pieces, [], settings


def metrics_section(
  run, split: Split, options: EvalOptions, out: Path, log, given=None
) -> tuple[dict, dict, dict[str, list]]:
  from mtx.evaluate import distances, music_metrics
  from mtx.evaluate.samples import decode_piece

  sample_list, bad, sampling = sample_pieces(run, options, out, log, given)
  truth = [decode_piece(run.codec, tokens, name) for tokens, name in zip(split.tokens, split.names)]

  def measured(piece: Piece):
    table = music_metrics.at_resolution(piece.table, options.resolution)
    if options.trim_beats:
      table = music_metrics.trim(table, options.trim_beats)
    return table

  tables = {
    "samples": [measured(p) for p in sample_list],
    "ground_truth": [measured(p) for p in truth],
  }
  start = time.perf_counter()
  per_file = {
    side: [music_metrics.file_metrics(t) for t in side_tables]
    for side, side_tables in tables.items()
  }
  log(
    f"music metrics of {sum(len(v) for v in per_file.values())} pieces in "
    f"{time.perf_counter() - start:.1f} s"
  )
  names = list(music_metrics.METRIC_DEFINITIONS)
  summary = {
    side: {name: music_metrics.summarize([m[name] for m in rows]) for name in names}
    for side, rows in per_file.items()
  }
  values = {
    side: {name: [m[name] for m in rows] for name in names} for side, rows in per_file.items()
  }
  strict = [p.strict for p in sample_list if p.strict is not None]
  features = {
    side: np.stack([distances.feature_vector(t, m) for t, m in zip(side_tables, per_file[side])])
    if side_tables
    else np.zeros((0, len(distances.FEATURE_NAMES)))
    for side, side_tables in tables.items()
  }
  section = {
    "trim_beats": options.trim_beats or None,
    "resolution": options.resolution,
    "sampling": sampling,
    "samples": summary["samples"],
    "ground_truth": summary["ground_truth"],
    "strict_decode_fraction": (sum(strict) / len(strict)) if strict else None,
    "strict_decode_count": len(strict),
    "distances": distances.set_distances(values["samples"], values["ground_truth"]),
    "frechet_feature_distance": distances.frechet_result(
      features["samples"], features["ground_truth"]
    ),
    "skipped_files": [{"file": name, "reason": reason} for name, reason in bad],
    "files": {
      side: [
        dict(
          name=p.name,
          strict=p.strict,
          rows=None if p.tokens is None else int(len(p.tokens)),
          metrics=m,
        )
        for p, m in zip(pieces, per_file[side])
      ]
      for side, pieces in (("samples", sample_list), ("ground_truth", truth))
    },
  }
  shown = {
    "samples": list(zip(sample_list, tables["samples"])),
    "ground_truth": list(zip(truth, tables["ground_truth"])),
  }
  return section, values, shown


def attention_section(run, split: Split, options: EvalOptions, out: Path, log) -> tuple[dict, list]:
  import jax

  from mtx.evaluate import attention_analysis, plots

  seq_len = int(run.config.data.seq_len)
  songs = split.tokens[: options.attention_sequences]
  model_config = run.config.model
  layers, heads = int(model_config.num_layers), int(model_config.num_heads)
  # Probabilities are (B, H, L, L) float32 per layer: keep a batch under ~512 MiB.
  batch = max(1, min(8, (1 << 27) // max(1, layers * heads * seq_len * seq_len)))
  names = run.codec.fields.names
  fields = [f for f in ORDERED_FIELDS + CATEGORY_FIELDS if f in names]
  analysis = attention_analysis.AttentionAnalysis(
    run.codec.fields,
    representation=run.codec.name,
    ordered=[f for f in ORDERED_FIELDS if f in names],
    categorical=[f for f in CATEGORY_FIELDS if f in names],
  )

  @jax.jit
  def maps(params, tokens, positions, segment_ids):
    return run.setup.model(params).attention_maps(
      tokens, positions=positions, segment_ids=segment_ids
    )

  from mtx.data.window import pad_row

  pad = pad_row(run.codec)
  arcs = None  # the first song's tokens and last-layer attention, for Music Transformer's view
  for first in range(0, len(songs), batch):
    chunk = songs[first : first + batch]
    tokens = np.broadcast_to(pad, (batch, seq_len, pad.size)).copy()
    valid = np.zeros((batch, seq_len), bool)
    for i, song in enumerate(chunk):
      rows = song[:seq_len]
      tokens[i, : len(rows)] = rows
      valid[i, : len(rows)] = True
    positions = np.where(valid, np.arange(seq_len), 0).astype(np.int32)
    probs = jax.device_get(maps(run.params, tokens, positions, valid.astype(np.int32)))
    analysis.add(probs, tokens, valid)
    if arcs is None:
      arcs = (tokens[0, : int(valid[0].sum())], np.asarray(probs[-1][0]))
  result = {field: _seen_categories(part) for field, part in analysis.result().items()}
  log(f"attention of {len(songs)} {split.name} songs analysed")
  figures = []
  for field in fields:
    part = result[field]
    path = out / "figures" / f"attention_{field}.png"
    if "codes" in part:
      labels = [category_label(run.codec, field, int(c)) for c in part["codes"]]
      plots.plot_category_attention(
        np.asarray(part["gain_mean"]),
        labels,
        path,
        title=f"attention gain by {field} (query row, key column)",
      )
      figures.append(
        (
          "attention",
          f"Attention gain from a query's {field} (row) to a key's "
          f"(column), mean over layers and heads",
          path,
        )
      )
    else:
      gain = np.asarray(part["gain"])  # (layers, heads, K)
      plots.plot_relative_gain(
        part["ks"],
        gain[-1],
        np.asarray(part["gain_mean"]),
        path,
        field=field,
        xlabel=f"{field} difference (query - key)",
      )
      figures.append(
        (
          "attention",
          f"Attention gain against {field} difference: last layer's "
          "heads (thin) and the mean over all layers and heads (thick)",
          path,
        )
      )
  if arcs is not None and run.codec.name == "mmt":
    figures += _arc_figure(run.codec, split.names[0], *arcs, out)
  return _jsonable(result), figures


def category_label(codec, field: str, code: int) -> str:
  """A readable name for a categorical field's code (MMT's instrument names)."""
  if field == "instrument" and codec.name == "mmt":
    from mtx.representation.fields import INSTRUMENTS

    return INSTRUMENTS[code - 1] if 0 < code <= len(INSTRUMENTS) else str(code)
  return str(code)


def _arc_figure(codec, name: str, tokens: np.ndarray, probs: np.ndarray, out: Path) -> list:
  """Music Transformer's attention view: one query note of a test song, the last layer's
  heads' arcs back to the notes they weight most."""
  from mtx.evaluate import plots
  from mtx.representation.mmt import BEAT, NOTE, PITCH, POSITION, TYPE

  notes = tokens[:, TYPE] == NOTE
  if notes.sum() < 2:
    return []
  onsets = np.where(
    notes, tokens[:, BEAT] - 1 + (tokens[:, POSITION] - 1) / codec.resolution, np.nan
  )
  pitches = np.where(notes, tokens[:, PITCH] - 1, np.nan)
  note_rows = np.flatnonzero(notes)
  query = int(note_rows[(3 * len(note_rows)) // 4])
  path = out / "figures" / "attention_arcs.png"
  plots.plot_attention_arcs(
    onsets,
    pitches,
    probs[:, query, : len(tokens)],
    query,
    path,
    title=f"{name}: last layer, query note at row {query}",
  )
  return [
    (
      "attention",
      f"Where the last layer's heads look from one note of {name} "
      "(Music Transformer's view): arcs to the notes with the most weight",
      path,
    )
  ]


def _seen_categories(part: dict) -> dict:
  """A categorical field's matrices cut to the categories some pair holds (an instrument
  field has 65, a chorale uses one or a few)."""
  if "codes" not in part:
    return part
  counts = np.asarray(part["pair_counts"])
  seen = np.flatnonzero(counts.sum(axis=0) + counts.sum(axis=1))
  out = {}
  for key, value in part.items():
    value = np.asarray(value) if isinstance(value, (np.ndarray, list)) else value
    if key == "codes":
      out[key] = value[seen]
    elif isinstance(value, np.ndarray) and value.ndim >= 2 and value.shape[-1] == counts.shape[0]:
      out[key] = value[..., seen[:, None], seen]
    else:
      out[key] = value
  return out


def embeddings_section(run, out: Path, split: Split | None = None) -> tuple[dict, list]:
  """Every field's input and output tables' cosine similarity (PNG per field and side;
  a table over MAX_SIMILARITY_CODES codes is drawn for its first codes), and the pitch
  field's octave score: over every pitch, and over the pitches the split's songs play
  (`played_octave`), where the embeddings were trained: rows of pitches no song plays
  stay near their initialization and only dilute the score."""
  from mtx.evaluate import embeddings, plots

  model = run.setup.model(run.params)
  tables = embeddings.field_tables(model, run.codec.fields.names)
  section, figures = {}, []
  pitch = pitch_codes(run.codec)
  for name, (inputs, outputs) in tables.items():
    entry = {"vocabulary": int(inputs.shape[0])}
    for side, table in (("input", inputs), ("output", outputs)):
      similarity = embeddings.cosine_similarity(table)
      if name == pitch[0]:
        first, last = pitch[1], pitch[2]
        entry[f"{side}_octave"] = embeddings.octave_score(similarity, first, last)
        played = played_codes(run.codec, split) if split is not None else None
        if played is not None and played[1] - played[0] >= 12:
          entry[f"{side}_played_octave"] = embeddings.octave_score(similarity, *played)
          entry["played_codes"] = list(played)
        block, caption = (
          similarity[first : last + 1, first : last + 1],
          (
            f"Cosine similarity of the 128 pitches' {side} "
            f"{'embeddings' if side == 'input' else 'head rows'} (octaves show as bands "
            "at +-12)"
          ),
        )
        labels = [plots.note_name(p) if p % 12 == 0 else "" for p in range(128)]
      else:
        block = similarity[:MAX_SIMILARITY_CODES, :MAX_SIMILARITY_CODES]
        caption = (
          f"Cosine similarity of the {name} field's {side} "
          f"{'embeddings' if side == 'input' else 'head rows'}"
          + (
            f" (codes 0-{MAX_SIMILARITY_CODES - 1})"
            if len(similarity) > MAX_SIMILARITY_CODES
            else ""
          )
        )
        labels = None
      path = out / "figures" / f"embedding_{name}_{side}.png"
      plots.plot_similarity(
        block, path, title=f"{name} {side}: cosine similarity", tick_labels=labels
      )
      figures.append(("embeddings", caption, path))
    section[name] = entry
  return section, figures


def played_codes(codec, split: Split) -> tuple[int, int] | None:
  """(lowest, highest) code of the pitches the split's notes play, in the field
  `pitch_codes` names; None when no note is found."""
  name, first, last = pitch_codes(codec)
  column = codec.fields.names.index(name)
  codes = []
  for tokens in split.tokens:
    values = tokens[:, column]
    if codec.name == "mmt":
      from mtx.representation.mmt import NOTE, TYPE

      values = values[tokens[:, TYPE] == NOTE]
    values = values[(values >= first) & (values <= last)]
    if values.size:
      codes += [int(values.min()), int(values.max())]
  return (min(codes), max(codes)) if codes else None


def pitch_codes(codec) -> tuple[str, int, int]:
  """(field, first code, last code) of the 128 MIDI pitches in the codec's vocabulary."""
  if "pitch" in codec.fields.names:
    return "pitch", 1, 128
  vocab = codec.vocab
  kind = {"performance": "note-on", "remi": "pitch", "mmm": "note-on"}[codec.name]
  first = vocab.offset(kind)
  return codec.fields.names[0], first, first + vocab.count(kind) - 1


def curves_section(workdir: str, out: Path) -> tuple[dict, list]:
  from mtx.evaluate import curves, plots

  series = curves.training_curves(workdir)
  if not series:
    return {"available": False}, []
  path = out / "figures" / "training_curves.png"
  plots.plot_curves(series, path)
  return dict(curves.summarize(series), available=True), [
    ("curves", "Training curves from the run's TensorBoard events", path)
  ]


def _jsonable(value):
  """numpy arrays and scalars as lists and Python numbers, recursively."""
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return value
  return value
