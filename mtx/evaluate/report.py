"""`report.json` and `report.html`: what `mtx-eval` leaves for a researcher to read.

The JSON is for machines and diffs: the same report gives the same bytes (sorted keys,
floats rounded to a fixed number of significant digits, NaN as null since JSON has no
NaN, infinities as the strings "inf" and "-inf"). The HTML is one self-contained page
(figures and audio inlined as data: URIs, inline CSS, no JavaScript), so it can be
mailed, attached to a ticket or opened from an archive years later, with nothing to
fetch.

The report's schema belongs to the analyses that fill it, so the page is rendered
generically: any nested dict of numbers and strings becomes headed tables, a dict of
dicts a table with one column per inner key; only the run header (`run`), the glossary
(`definitions`) and the order of the known sections are special. Both files are written
atomically (a temporary file renamed over the target), so a report that exists is a
complete one.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import struct
import tempfile
import wave
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

JSON_SIGNIFICANT_DIGITS = 8
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (report key, heading), in page order; sections missing from the report are skipped,
# except the training curves ("curves"), whose absence is itself worth saying.
KNOWN_SECTIONS = (
    ("likelihood", "Likelihood"),
    ("music_metrics", "Music metrics"),
    ("attention", "Attention"),
    ("embeddings", "Embeddings"),
    ("curves", "Training curves"),
)
_SPECIAL_KEYS = {"run", "definitions"}
_MAX_INLINE_LIST = 8
_MAX_ROWS = 200
_MAX_HEADING = 6


# ---- files ----

def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
  """Writes `data` to `path` through a temporary file in the same folder and a rename:
  a reader (or a crash) sees the old file or the new one, never half of one."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from the rest of a team
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise
  return path


# ---- JSON ----

def to_jsonable(value: Any, *, digits: int = JSON_SIGNIFICANT_DIGITS,
                where: str = "report") -> Any:
  """Plain JSON types from a report that may hold numpy scalars and arrays, tuples,
  paths and non-string keys. Floats keep `digits` significant digits (the last bits of
  a float sum differ between machines and say nothing); NaN -> None, +-inf -> "inf"
  / "-inf". Anything else is a TypeError naming where it sits in the report."""
  if isinstance(value, np.ndarray):
    value = value.tolist()
  elif isinstance(value, np.generic):
    value = value.item()
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):
    if math.isnan(value):
      return None
    if math.isinf(value):
      return "inf" if value > 0 else "-inf"
    return float(f"{value:.{digits}g}")
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if isinstance(value, Mapping):
    out = {}
    for key, item in value.items():
      name = key if isinstance(key, str) else str(to_jsonable(key, digits=digits, where=where))
      if name in out:
        raise ValueError(f"{where} has two keys that both read {name!r}")
      out[name] = to_jsonable(item, digits=digits, where=f"{where}.{name}")
    return out
  if isinstance(value, (list, tuple)):
    return [to_jsonable(item, digits=digits, where=f"{where}[{i}]")
            for i, item in enumerate(value)]
  raise TypeError(f"{where} is a {type(value).__name__}; a report holds numbers, strings, "
                  "lists and dicts")


def dumps_json(report: Mapping) -> str:
  """The report as JSON text: sorted keys, two-space indents, a final newline."""
  return json.dumps(to_jsonable(report), sort_keys=True, indent=2, ensure_ascii=False,
                    allow_nan=False) + "\n"


def write_json(report: Mapping, path: str | os.PathLike) -> Path:
  """Writes `dumps_json(report)` atomically; nothing is written when a value cannot
  be serialized."""
  return write_atomic(path, dumps_json(report).encode("utf-8"))


# ---- HTML: values ----

def _is_scalar(value) -> bool:
  return value is None or isinstance(value, (bool, int, float, str, np.generic))


def _is_summary(value) -> bool:
  """A mean with its spread ({"mean", "std"}, maybe counts of values and of NaNs): one
  number to a reader."""
  return (isinstance(value, Mapping) and "mean" in value
          and set(value) <= {"mean", "std", "n", "count", "nan"}
          and all(_is_scalar(v) for v in value.values()))


def _is_flat(value) -> bool:
  """A non-empty dict whose every value fits in a cell: one row of a table."""
  return (isinstance(value, Mapping) and bool(value) and not _is_summary(value)
          and all(_is_cell(v) for v in value.values()))


def _is_cell(value) -> bool:
  """What fits in one table cell: a scalar, a short list of scalars, a mean +- std."""
  if _is_scalar(value) or _is_summary(value):
    return True
  if isinstance(value, (list, tuple)):
    return len(value) <= _MAX_INLINE_LIST and all(_is_scalar(v) for v in value)
  return False


def format_number(value) -> str:
  """Four significant digits; thousands grouped where the integer part says it all."""
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, int):
    return f"{value:,}"
  if math.isnan(value):
    return "n/a"
  if math.isinf(value):
    return "∞" if value > 0 else "−∞"
  if 1e3 <= abs(value) < 1e9:
    return f"{value:,.0f}"
  return f"{value:.4g}"


def _scalar_text(value) -> str:
  if isinstance(value, np.generic):
    value = value.item()
  if value is None:
    return "—"
  if isinstance(value, str):
    return value
  return format_number(value)


def _cell_text(value) -> str:
  if _is_summary(value):
    text = _scalar_text(value["mean"])
    if "std" in value:
      text += f" ± {_scalar_text(value['std'])}"
    if value.get("nan"):
      text += f" ({_scalar_text(value['nan'])} NaN)"
    return text
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(_scalar_text(v) for v in value) + "]"
  return _scalar_text(value)


def _is_numeric(value) -> bool:
  if _is_summary(value):
    return True
  return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _list_text(values: Sequence) -> str:
  """A long list of numbers in a line: its size and range, not a wall of digits."""
  numbers = np.asarray([v for v in values if isinstance(v, (int, float, np.number))
                        and not isinstance(v, bool)], np.float64)
  if len(values) <= _MAX_INLINE_LIST or numbers.size != len(values):
    return ", ".join(_scalar_text(v) for v in values)
  finite = numbers[np.isfinite(numbers)]
  if not finite.size:
    return f"{len(values)} values, none finite"
  return (f"{len(values)} values: min {format_number(float(finite.min()))}, "
          f"mean {format_number(float(finite.mean()))}, max {format_number(float(finite.max()))}")


def _numeric_array(values) -> np.ndarray | None:
  try:
    array = np.asarray(values)
  except ValueError:  # ragged
    return None
  return array if array.dtype.kind in "iuf" else None


def _array_text(array: np.ndarray) -> str:
  """A matrix in the report (a similarity table, gains per head): its shape and range;
  the figures show it."""
  finite = array[np.isfinite(array)]
  shape = " × ".join(str(n) for n in array.shape)
  if not finite.size:
    return f"array {shape}, none finite"
  return (f"array {shape}: min {format_number(float(finite.min()))}, "
          f"mean {format_number(float(finite.mean()))}, max {format_number(float(finite.max()))}")


# ---- HTML: page building ----

class _Page:
  """Accumulates the body and hands out unique element ids."""

  def __init__(self, definitions: Mapping[str, str]):
    self.definitions = definitions
    self.parts: list[str] = []
    self._ids: set[str] = set()

  def add(self, *parts: str) -> None:
    self.parts.extend(parts)

  def new_id(self, name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "section"
    ident, n = base, 1
    while ident in self._ids:
      n += 1
      ident = f"{base}-{n}"
    self._ids.add(ident)
    return ident

  def term(self, name) -> str:
    """A name, with its definition as a tooltip where the report defines it."""
    text = html.escape(_prettify(name))
    definition = self.definitions.get(str(name))
    if definition is None:
      return text
    return f'<span class="term" title="{html.escape(definition)}">{text}</span>'


def _prettify(name) -> str:
  return str(name).replace("_", " ")


def _e(text) -> str:
  return html.escape(str(text))


def _glossary(definitions, prefix: str = "") -> list[tuple[str, str, str]]:
  """(full name, leaf name, text) per definition; a nested group ({"likelihood":
  {"nll": ...}}) names its entries with dotted paths, and a dotted name
  ("music_metrics.pitch_range") defines its last part wherever it heads a row."""
  entries: list[tuple[str, str, str]] = []
  if not isinstance(definitions, Mapping):
    return entries
  for key, value in definitions.items():
    if isinstance(value, Mapping):
      entries.extend(_glossary(value, f"{prefix}{key}."))
    else:
      entries.append((f"{prefix}{key}", str(key).rsplit(".", 1)[-1], str(value)))
  return entries


def _td(value) -> str:
  numeric = ' class="num"' if _is_numeric(value) else ""
  return f"<td{numeric}>{_e(_cell_text(value))}</td>"


def _key_value_table(page: _Page, items: Sequence[tuple[Any, Any]]) -> str:
  rows = "".join(f'<tr><th scope="row">{page.term(k)}</th>{_td(v)}</tr>' for k, v in items)
  return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _matrix_table(page: _Page, rows: Mapping[Any, Mapping]) -> str:
  """Rows by columns; a much longer list of columns than of rows is turned to run down
  the page, so two sets by ten metrics read as ten rows, whichever way the analysis
  nested them."""
  columns: list = []
  for inner in rows.values():
    columns.extend(c for c in inner if c not in columns)
  if len(columns) > 2 * len(rows):
    rows = {c: {r: inner[c] for r, inner in rows.items() if c in inner} for c in columns}
    columns = []
    for inner in rows.values():
      columns.extend(c for c in inner if c not in columns)
  head = "".join(f'<th scope="col">{page.term(c)}</th>' for c in columns)
  body = "".join(
      f'<tr><th scope="row">{page.term(r)}</th>'
      + "".join(_td(inner[c]) if c in inner else "<td></td>" for c in columns) + "</tr>"
      for r, inner in rows.items())
  return (f'<table class="matrix"><thead><tr><th></th>{head}</tr></thead>'
          f"<tbody>{body}</tbody></table>")


def _flat_record(record: Mapping, prefix: str = "") -> dict:
  """{"name": .., "metrics": {"a": 1}} -> {"name": .., "metrics.a": 1}."""
  flat = {}
  for key, value in record.items():
    if isinstance(value, Mapping) and not _is_summary(value):
      flat.update(_flat_record(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _is_records(value) -> bool:
  return (isinstance(value, (list, tuple)) and bool(value)
          and all(isinstance(v, Mapping) for v in value)
          and all(_is_cell(x) for v in value for x in _flat_record(v).values()))


def _records_table(page: _Page, records: Sequence[Mapping]) -> str:
  """A list of dicts (one per song, one per sample) as rows, nested dicts as dotted
  columns; the first `_MAX_ROWS` only, as the JSON keeps them all."""
  records = [_flat_record(r) for r in records]
  columns: list = []
  for record in records:
    columns.extend(c for c in record if c not in columns)
  head = "".join(f'<th scope="col">{page.term(c)}</th>' for c in columns)
  body = "".join("<tr>" + "".join(_td(r[c]) if c in r else "<td></td>" for c in columns)
                 + "</tr>" for r in records[:_MAX_ROWS])
  more = (f'<p class="note">The first {_MAX_ROWS} of {len(records)} rows; report.json '
          "has them all.</p>" if len(records) > _MAX_ROWS else "")
  return (f'<table class="matrix"><thead><tr>{head}</tr></thead>'
          f"<tbody>{body}</tbody></table>{more}")


# Columns of a set comparison (samples against ground truth) taken from its distances.
COMPARISON_COLUMNS = ("overlap_area", "kl_divergence")


def _comparison_table(page: _Page, section: Mapping) -> str | None:
  """Samples beside ground truth, metric by metric, with the headline distances: the
  table a reader of a music-metrics section looks for first. None when the section does
  not hold two sets ("samples", "ground_truth") summarized over the same metrics."""
  samples, truth = section.get("samples"), section.get("ground_truth")
  if not (_is_flat(samples) and _is_flat(truth)):
    return None
  metrics = [m for m in samples if m in truth]
  if not metrics:
    return None
  distances = section.get("distances")
  distances = distances if isinstance(distances, Mapping) else {}
  rows = {}
  for metric in metrics:
    row = {"samples": samples[metric], "ground_truth": truth[metric]}
    found = distances.get(metric)
    if isinstance(found, Mapping):
      row.update((c, found[c]) for c in COMPARISON_COLUMNS if _is_cell(found.get(c, {})))
    elif _is_cell(found) and found is not None:
      row["distance"] = found
    rows[metric] = row
  columns: list = []
  for row in rows.values():
    columns.extend(c for c in row if c not in columns)
  head = "".join(f'<th scope="col">{page.term(c)}</th>' for c in columns)
  body = "".join(
      f'<tr><th scope="row">{page.term(m)}</th>'
      + "".join(_td(row[c]) if c in row else "<td></td>" for c in columns) + "</tr>"
      for m, row in rows.items())
  return (f'<table class="matrix comparison"><thead><tr><th></th>{head}</tr></thead>'
          f"<tbody>{body}</tbody></table>")


def _render_value(page: _Page, value, level: int) -> None:
  """Any report value as HTML: tables for dicts, headings for nesting.

  A dict becomes: its set comparison (see `_comparison_table`), a two-column table of
  its scalar entries, one table per group of child dicts that share their keys (one row
  each), and a headed subsection for each remaining child.
  """
  if isinstance(value, np.ndarray):
    value = value.tolist()
  if _is_scalar(value):
    page.add(f"<p>{_e(_scalar_text(value))}</p>")
  elif isinstance(value, (list, tuple)):
    array = _numeric_array(value)
    if array is not None and array.ndim >= 2:
      page.add(f'<p class="list">{_e(_array_text(array))}</p>')
    elif _is_records(value):
      page.add(_records_table(page, value))
    elif all(_is_scalar(v) for v in value):
      page.add(f'<p class="list">{_e(_list_text(value))}</p>')
    else:
      for i, item in enumerate(value):
        _subsection(page, f"item {i}", item, level)
  elif isinstance(value, Mapping):
    if not value:
      page.add('<p class="note">(empty)</p>')
      return
    if all(_is_flat(v) for v in value.values()):
      page.add(_matrix_table(page, value))
      return
    done = set()
    comparison = _comparison_table(page, value)
    if comparison:
      page.add(comparison)
      done |= {"samples", "ground_truth"}
    cells = [(k, v) for k, v in value.items() if k not in done and _is_cell(v)]
    if cells:
      page.add(_key_value_table(page, cells))
    groups: dict[tuple, list] = {}
    for key, item in value.items():
      if key not in done and _is_flat(item):
        groups.setdefault(tuple(item), []).append(key)
    for keys in groups.values():
      if len(keys) > 1:
        page.add(_matrix_table(page, {k: value[k] for k in keys}))
        done |= set(keys)
    for key, item in value.items():
      if key not in done and not _is_cell(item):
        _subsection(page, key, item, level)
  else:
    page.add(f"<p>{_e(value)}</p>")


def _subsection(page: _Page, name, value, level: int) -> None:
  tag = f"h{min(level, _MAX_HEADING)}"
  page.add(f'<{tag} id="{page.new_id(name)}">{page.term(name)}</{tag}>')
  _render_value(page, value, level + 1)


def _png_size(data: bytes) -> tuple[int, int]:
  width, height = struct.unpack(">II", data[16:24])
  return width, height


def _figure(page: _Page, caption: str, path) -> None:
  path = Path(path)
  try:
    data = path.read_bytes()
  except OSError as error:
    page.add(f'<p class="note">Figure “{_e(caption)}” is missing: {_e(path)} '
             f"({_e(error.strerror or error)}).</p>")
    return
  if not data.startswith(PNG_SIGNATURE) or len(data) < 24:
    page.add(f'<p class="note">Figure “{_e(caption)}” is not a PNG: {_e(path)}.</p>')
    return
  width, height = _png_size(data)
  src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
  page.add(f'<figure><img src="{src}" alt="{_e(caption)}" width="{width}" '
           f'height="{height}"><figcaption>{_e(caption)}</figcaption></figure>')


PREVIEW_RATE = 22050  # embedded audio: mono 16-bit at most this rate, a sixth of CD size


def _wav_clip(path: Path, max_seconds: float | None) -> tuple[bytes, str]:
  """The WAV as embedded: its first `max_seconds`, and, when it is 16-bit, as a mono
  preview at no more than PREVIEW_RATE (channels averaged, the rate halved by averaging
  neighbouring frames) so a page of several clips stays a few MiB; and a note saying
  what was cut. A WAV the `wave` module cannot read (float samples) is kept whole."""
  data = path.read_bytes()
  try:
    with wave.open(io.BytesIO(data)) as reader:
      params = reader.getparams()
      duration = params.nframes / params.framerate
      count = params.nframes
      if max_seconds is not None and duration > max_seconds:
        count = int(max_seconds * params.framerate)
      frames = reader.readframes(count)
  except (wave.Error, EOFError, ZeroDivisionError):
    return data, ""
  note = (f"the first {max_seconds:g} s of {duration:.0f} s"
          if count < params.nframes else "")
  rate, channels, width = params.framerate, params.nchannels, params.sampwidth
  if width == 2:
    samples = np.frombuffer(frames, "<i2").reshape(-1, channels).astype(np.float32)
    samples = samples.mean(axis=1)
    while rate > PREVIEW_RATE and rate % 2 == 0:
      samples = samples[:len(samples) // 2 * 2].reshape(-1, 2).mean(axis=1)
      rate //= 2
    frames = np.round(samples).astype("<i2").tobytes()
    channels = 1
  out = io.BytesIO()
  with wave.open(out, "wb") as writer:
    writer.setnchannels(channels)
    writer.setsampwidth(width)
    writer.setframerate(rate)
    writer.writeframes(frames)
  return out.getvalue(), note


def _size(num_bytes: int) -> str:
  return (f"{num_bytes / 2**20:.1f} MiB" if num_bytes >= 2**20
          else f"{num_bytes / 2**10:.0f} KiB")


def _audio(page: _Page, caption: str, path, max_seconds: float | None,
           max_bytes: int | None) -> None:
  path = Path(path)
  try:
    data, cut = _wav_clip(path, max_seconds)
  except OSError as error:
    page.add(f'<p class="note">Audio “{_e(caption)}” is missing: {_e(path)} '
             f"({_e(error.strerror or error)}).</p>")
    return
  if max_bytes is not None and len(data) > max_bytes:
    page.add(f'<p class="note">Audio “{_e(caption)}” is not embedded: '
             f"{_size(len(data))} is over the {_size(max_bytes)} limit; "
             f"the file is {_e(path)}.</p>")
    return
  src = "data:audio/wav;base64," + base64.b64encode(data).decode("ascii")
  note = f" ({_e(cut)})" if cut else ""
  page.add(f'<figure class="audio"><figcaption>{_e(caption)}{note}</figcaption>'
           f'<audio controls preload="metadata" src="{src}"></audio></figure>')


def _figures(page: _Page, entries: Iterable[tuple[str, Any]]) -> None:
  entries = list(entries)
  if entries:
    page.add('<div class="figures">')
    for caption, path in entries:
      _figure(page, caption, path)
    page.add("</div>")


_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 auto; max-width: 1240px; padding: 0 24px 48px; color: #1d1d1f;
  background: #fff; }
header { border-bottom: 2px solid #d0d7de; margin-bottom: 8px; }
h1 { font-size: 1.6em; margin: 20px 0 8px; }
h2 { font-size: 1.3em; margin-top: 32px; border-bottom: 1px solid #d0d7de; }
h3, h4, h5, h6 { margin: 18px 0 6px; }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
a { color: #0a58ca; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #d0d7de; padding: 3px 10px; text-align: left;
  vertical-align: top; }
thead th { background: #f3f5f7; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th[scope=row] { font-weight: 600; }
.term { text-decoration: underline dotted; cursor: help; }
.note { color: #6e5300; background: #fff8e1; padding: 4px 8px; border-radius: 4px; }
.list { font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; }
.groups { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr));
  gap: 16px; }
figure { margin: 8px 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: 0.9em; color: #57606a; }
dt { font-weight: 600; margin-top: 8px; }
dd { margin-left: 20px; }
""".strip()


def _section_key(name: str) -> str:
  return re.sub(r"\W+", "_", str(name).strip().lower())


def _run_header(page: _Page, report: Mapping) -> str:
  run = dict(report.get("run") or {}) if isinstance(report.get("run"), Mapping) else {}
  known = {key for key, _ in KNOWN_SECTIONS}
  for key, value in report.items():
    if key not in _SPECIAL_KEYS and key not in known and _is_scalar(value):
      run.setdefault(key, value)
  settings = report.get("settings")
  if isinstance(settings, Mapping) and _is_scalar(settings.get("seed")):
    run.setdefault("seed", settings["seed"])
  workdir = run.get("workdir")
  name = Path(str(workdir)).name if workdir else ""
  step = run.get("step")
  title = "mtx-eval report" + (f": {name}" if name else "") + (
      f" at step {_scalar_text(step)}" if step is not None else "")
  page.add("<header>", f"<h1>{_e(title)}</h1>")
  if run:
    page.add(_key_value_table(page, [(k, v) for k, v in run.items() if _is_cell(v)]))
  page.add("</header>")
  return title


def render_html(
    report: Mapping,
    *,
    images: Sequence[tuple[str, str, Any]] = (),
    audio: Sequence[tuple[str, Any]] = (),
    piano_rolls: Sequence[tuple[str, str, Any]] = (),
    max_audio_seconds: float | None = 20.0,
    max_audio_bytes: int | None = 4 * 2**20,
) -> str:
  """The page as text (see `write_html`); the same arguments give the same text."""
  glossary = sorted(_glossary(report.get("definitions") or {}))
  lookup = {leaf: text for _, leaf, text in reversed(glossary)}
  lookup.update((name, text) for name, _, text in glossary)
  page = _Page(lookup)
  title = _run_header(page, report)

  by_section: dict[str, list[tuple[str, Any]]] = {}
  for section, caption, path in images:
    by_section.setdefault(_section_key(section), []).append((caption, path))

  # (kind, report key or image section, heading) in page order
  sections: list[tuple[str, Any, str]] = []
  known = {key for key, _ in KNOWN_SECTIONS}
  for key, heading in KNOWN_SECTIONS:
    if key in report or key in by_section or key == "curves":
      sections.append(("report", key, heading))
  for key, value in report.items():
    if key not in known and key not in _SPECIAL_KEYS and not _is_scalar(value):
      sections.append(("report", key, _prettify(key).capitalize()))
  placed = {_section_key(key) for kind, key, _ in sections}
  sections.extend(("report", key, _prettify(key).capitalize())
                  for key in by_section if key not in placed)
  if piano_rolls:
    sections.append(("piano_rolls", None, "Piano rolls"))
  if audio:
    sections.append(("audio", None, "Audio"))
  if glossary:
    sections.append(("definitions", None, "Definitions"))

  ids = [page.new_id(key if kind == "report" else kind) for kind, key, _ in sections]
  page.add("<nav><ul>" + "".join(f'<li><a href="#{ident}">{_e(heading)}</a></li>'
                                 for ident, (_, _, heading) in zip(ids, sections))
           + "</ul></nav>")

  for ident, (kind, key, heading) in zip(ids, sections):
    page.add(f'<section id="{ident}">', f"<h2>{_e(heading)}</h2>")
    if kind == "piano_rolls":
      groups: dict[str, list] = {}
      for group, caption, path in piano_rolls:
        groups.setdefault(str(group), []).append((caption, path))
      page.add('<div class="groups">')
      for group, entries in groups.items():
        page.add("<div>", f'<h3 id="{page.new_id("piano-rolls-" + group)}">{_e(group)}</h3>')
        for caption, path in entries:
          _figure(page, caption, path)
        page.add("</div>")
      page.add("</div>")
    elif kind == "audio":
      for caption, path in audio:
        _audio(page, caption, path, max_audio_seconds, max_audio_bytes)
    elif kind == "definitions":
      page.add("<dl>" + "".join(
          f'<dt id="{page.new_id("def-" + name)}">{_e(name)}</dt><dd>{_e(text)}</dd>'
          for name, _, text in glossary) + "</dl>")
    else:
      value = report.get(key)
      has_value = value is not None and not (isinstance(value, (Mapping, list, tuple))
                                             and not value)
      figures = by_section.get(_section_key(key), ())
      if has_value:
        _render_value(page, value, 3)
      if key == "curves" and not figures:
        page.add('<p class="note">No training curves: the run has no TensorBoard events '
                 "(summaries off, or nothing logged yet).</p>")
      _figures(page, figures)
    page.add("</section>")

  head = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
          f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
          f'<meta name="generator" content="mtx-eval">\n'
          f"<title>{_e(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n")
  return head + "\n".join(page.parts) + "\n</body>\n</html>\n"


def write_html(
    report: Mapping,
    out_dir: str | os.PathLike,
    *,
    images: Sequence[tuple[str, str, Any]] = (),
    audio: Sequence[tuple[str, Any]] = (),
    piano_rolls: Sequence[tuple[str, str, Any]] = (),
    max_audio_seconds: float | None = 20.0,
    max_audio_bytes: int | None = 4 * 2**20,
    filename: str = "report.html",
) -> Path:
  """Writes the report as one self-contained page, `out_dir/filename`, atomically.

  images: (section, caption, PNG path); a section named like a report key
    ("attention", "embeddings", "curves") sits with that key's tables, any
    other gets a section of its own.
  audio: (caption, WAV path); each clip is cut to its first `max_audio_seconds` and
    left out, with a note, when still over `max_audio_bytes` (a page of many minutes of
    44.1 kHz audio would not open). None lifts a limit.
  piano_rolls: (group, caption, PNG path), e.g. group "samples" or "ground truth";
    the groups stand in columns side by side, so samples read beside real songs.
  A missing file is a note on the page, not an error: the report of a half-finished
  evaluation still opens.
  """
  text = render_html(report, images=images, audio=audio, piano_rolls=piano_rolls,
                     max_audio_seconds=max_audio_seconds, max_audio_bytes=max_audio_bytes)
  return write_atomic(Path(out_dir) / filename, text.encode("utf-8"))
