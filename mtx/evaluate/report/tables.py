"""Report values as HTML tables and headed subsections, whatever their nesting: the
generic part of the page, which knows no analysis by name."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtx.evaluate.report.cells import (
  array_text,
  cell_text,
  is_cell,
  is_flat,
  is_numeric,
  is_scalar,
  is_summary,
  list_text,
  numeric_array,
  scalar_text,
)

_MAX_ROWS = 200
_MAX_HEADING = 6


class Page:
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
    text = html.escape(prettify(name))
    definition = self.definitions.get(str(name))
    if definition is None:
      return text
    return f'<span class="term" title="{html.escape(definition)}">{text}</span>'


def prettify(name) -> str:
  return str(name).replace("_", " ")


def escape(text) -> str:
  return html.escape(str(text))


def glossary_entries(definitions, prefix: str = "") -> list[tuple[str, str, str]]:
  """(full name, leaf name, text) per definition; a nested group ({"likelihood":
  {"nll": ...}}) names its entries with dotted paths, and a dotted name
  ("music_metrics.pitch_range") defines its last part wherever it heads a row."""
  entries: list[tuple[str, str, str]] = []
  if not isinstance(definitions, Mapping):
    return entries
  for key, value in definitions.items():
    if isinstance(value, Mapping):
      entries.extend(glossary_entries(value, f"{prefix}{key}."))
    else:
      entries.append((f"{prefix}{key}", str(key).rsplit(".", 1)[-1], str(value)))
  return entries


def td(value) -> str:
  numeric = ' class="num"' if is_numeric(value) else ""
  return f"<td{numeric}>{escape(cell_text(value))}</td>"


def key_value_table(page: Page, items: Sequence[tuple[Any, Any]]) -> str:
  rows = "".join(f'<tr><th scope="row">{page.term(k)}</th>{td(v)}</tr>' for k, v in items)
  return f'<table class="kv"><tbody>{rows}</tbody></table>'


def matrix_table(page: Page, rows: Mapping[Any, Mapping]) -> str:
  """Rows by columns; a much longer list of columns than of rows is turned to run down
  the page, so two sets by ten metrics read as ten rows, whichever way the analysis
  nested them."""
  columns = _columns(rows)
  if len(columns) > 2 * len(rows):
    rows = {c: {r: inner[c] for r, inner in rows.items() if c in inner} for c in columns}
  return _matrix(rows, page, "matrix")


def flat_record(record: Mapping, prefix: str = "") -> dict:
  """{"name": .., "metrics": {"a": 1}} -> {"name": .., "metrics.a": 1}."""
  flat = {}
  for key, value in record.items():
    if isinstance(value, Mapping) and not is_summary(value):
      flat.update(flat_record(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def is_records(value) -> bool:
  return (
    isinstance(value, (list, tuple))
    and bool(value)
    and all(isinstance(v, Mapping) for v in value)
    and all(is_cell(x) for v in value for x in flat_record(v).values())
  )


def records_table(page: Page, records: Sequence[Mapping]) -> str:
  """A list of dicts (one per song, one per sample) as rows, nested dicts as dotted
  columns; the first `_MAX_ROWS` only, as the JSON keeps them all."""
  records = [flat_record(r) for r in records]
  columns: list = []
  for record in records:
    columns.extend(c for c in record if c not in columns)
  head = "".join(f'<th scope="col">{page.term(c)}</th>' for c in columns)
  body = "".join(
    "<tr>" + "".join(td(r[c]) if c in r else "<td></td>" for c in columns) + "</tr>"
    for r in records[:_MAX_ROWS]
  )
  more = (
    f'<p class="note">The first {_MAX_ROWS} of {len(records)} rows; report.json has them all.</p>'
    if len(records) > _MAX_ROWS
    else ""
  )
  return f'<table class="matrix"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


# Columns of a set comparison (samples against ground truth) taken from its distances.
COMPARISON_COLUMNS = ("overlap_area", "kl_divergence")


def comparison_table(page: Page, section: Mapping) -> str | None:
  """Samples beside ground truth, metric by metric, with the headline distances: the
  table a reader of a music-metrics section looks for first. None when the section does
  not hold two sets ("samples", "ground_truth") summarized over the same metrics."""
  samples, truth = section.get("samples"), section.get("ground_truth")
  if not (is_flat(samples) and is_flat(truth)):
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
      row.update((c, found[c]) for c in COMPARISON_COLUMNS if is_cell(found.get(c, {})))
    elif is_cell(found) and found is not None:
      row["distance"] = found
    rows[metric] = row
  return _matrix(rows, page, "matrix comparison")


def render_value(page: Page, value, level: int) -> None:
  """Any report value as HTML: tables for dicts, headings for nesting.

  A dict becomes: its set comparison (see `comparison_table`), a two-column table of
  its scalar entries, one table per group of child dicts that share their keys (one row
  each), and a headed subsection for each remaining child.
  """
  if isinstance(value, np.ndarray):
    value = value.tolist()
  if is_scalar(value):
    page.add(f"<p>{escape(scalar_text(value))}</p>")
  elif isinstance(value, (list, tuple)):
    array = numeric_array(value)
    if array is not None and array.ndim >= 2:
      page.add(f'<p class="list">{escape(array_text(array))}</p>')
    elif is_records(value):
      page.add(records_table(page, value))
    elif all(is_scalar(v) for v in value):
      page.add(f'<p class="list">{escape(list_text(value))}</p>')
    else:
      for i, item in enumerate(value):
        subsection(page, f"item {i}", item, level)
  elif isinstance(value, Mapping):
    if not value:
      page.add('<p class="note">(empty)</p>')
      return
    if all(is_flat(v) for v in value.values()):
      page.add(matrix_table(page, value))
      return
    done = set()
    comparison = comparison_table(page, value)
    if comparison:
      page.add(comparison)
      done |= {"samples", "ground_truth"}
    cells = [(k, v) for k, v in value.items() if k not in done and is_cell(v)]
    if cells:
      page.add(key_value_table(page, cells))
    groups: dict[tuple, list] = {}
    for key, item in value.items():
      if key not in done and is_flat(item):
        groups.setdefault(tuple(item), []).append(key)
    for keys in groups.values():
      if len(keys) > 1:
        page.add(matrix_table(page, {k: value[k] for k in keys}))
        done |= set(keys)
    for key, item in value.items():
      if key not in done and not is_cell(item):
        subsection(page, key, item, level)
  else:
    page.add(f"<p>{escape(value)}</p>")


def subsection(page: Page, name, value, level: int) -> None:
  tag = f"h{min(level, _MAX_HEADING)}"
  page.add(f'<{tag} id="{page.new_id(name)}">{page.term(name)}</{tag}>')
  render_value(page, value, level + 1)


def _columns(rows: dict) -> list:
  """Every inner key, in the order first seen."""
  columns: list = []
  for inner in rows.values():
    columns.extend(c for c in inner if c not in columns)
  return columns


def _matrix(rows: dict, page, css_class: str) -> str:
  """A table of rows of cells: a header of the columns, a row header per row, an empty
  cell where a row lacks a column."""
  columns = _columns(rows)
  head = "".join(f'<th scope="col">{page.term(c)}</th>' for c in columns)
  body = "".join(
    f'<tr><th scope="row">{page.term(r)}</th>'
    + "".join(td(inner[c]) if c in inner else "<td></td>" for c in columns)
    + "</tr>"
    for r, inner in rows.items()
  )
  return (
    f'<table class="{css_class}"><thead><tr><th></th>{head}</tr></thead>'
    f"<tbody>{body}</tbody></table>"
  )
