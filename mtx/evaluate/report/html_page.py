"""report.html: one self-contained page (figures and audio inlined, inline CSS, no
JavaScript), so it can be mailed, attached to a ticket or opened from an archive years
later. Only the run header (`run`), the glossary (`definitions`) and the order of the
known sections are special; the rest is rendered generically (`tables`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtx.evaluate.report.cells import is_cell, is_scalar, scalar_text
from mtx.evaluate.report.json_file import write_atomic
from mtx.evaluate.report.media import add_audio, add_figure, add_figures
from mtx.evaluate.report.tables import (
  Page,
  escape,
  glossary_entries,
  key_value_table,
  prettify,
  render_value,
)

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


def _run_header(page: Page, report: Mapping) -> str:
  run = dict(report.get("run") or {}) if isinstance(report.get("run"), Mapping) else {}
  known = {key for key, _ in KNOWN_SECTIONS}
  for key, value in report.items():
    if key not in _SPECIAL_KEYS and key not in known and is_scalar(value):
      run.setdefault(key, value)
  settings = report.get("settings")
  if isinstance(settings, Mapping) and is_scalar(settings.get("seed")):
    run.setdefault("seed", settings["seed"])
  workdir = run.get("workdir")
  name = Path(str(workdir)).name if workdir else ""
  step = run.get("step")
  title = (
    "mtx-eval report"
    + (f": {name}" if name else "")
    + (f" at step {scalar_text(step)}" if step is not None else "")
  )
  page.add("<header>", f"<h1>{escape(title)}</h1>")
  if run:
    page.add(key_value_table(page, [(k, v) for k, v in run.items() if is_cell(v)]))
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
  glossary = sorted(glossary_entries(report.get("definitions") or {}))
  lookup = {leaf: text for _, leaf, text in reversed(glossary)}
  lookup.update((name, text) for name, _, text in glossary)
  page = Page(lookup)
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
    if key not in known and key not in _SPECIAL_KEYS and not is_scalar(value):
      sections.append(("report", key, prettify(key).capitalize()))
  placed = {_section_key(key) for kind, key, _ in sections}
  sections.extend(
    ("report", key, prettify(key).capitalize()) for key in by_section if key not in placed
  )
  if piano_rolls:
    sections.append(("piano_rolls", None, "Piano rolls"))
  if audio:
    sections.append(("audio", None, "Audio"))
  if glossary:
    sections.append(("definitions", None, "Definitions"))

  ids = [page.new_id(key if kind == "report" else kind) for kind, key, _ in sections]
  page.add(
    "<nav><ul>"
    + "".join(
      f'<li><a href="#{ident}">{escape(heading)}</a></li>'
      for ident, (_, _, heading) in zip(ids, sections)
    )
    + "</ul></nav>"
  )

  for ident, (kind, key, heading) in zip(ids, sections):
    page.add(f'<section id="{ident}">', f"<h2>{escape(heading)}</h2>")
    if kind == "piano_rolls":
      groups: dict[str, list] = {}
      for group, caption, path in piano_rolls:
        groups.setdefault(str(group), []).append((caption, path))
      page.add('<div class="groups">')
      for group, entries in groups.items():
        page.add("<div>", f'<h3 id="{page.new_id("piano-rolls-" + group)}">{escape(group)}</h3>')
        for caption, path in entries:
          add_figure(page, caption, path)
        page.add("</div>")
      page.add("</div>")
    elif kind == "audio":
      for caption, path in audio:
        add_audio(page, caption, path, max_audio_seconds, max_audio_bytes)
    elif kind == "definitions":
      page.add(
        "<dl>"
        + "".join(
          f'<dt id="{page.new_id("def-" + name)}">{escape(name)}</dt><dd>{escape(text)}</dd>'
          for name, _, text in glossary
        )
        + "</dl>"
      )
    else:
      value = report.get(key)
      has_value = value is not None and not (
        isinstance(value, (Mapping, list, tuple)) and not value
      )
      figures = by_section.get(_section_key(key), ())
      if has_value:
        render_value(page, value, 3)
      if key == "curves" and not figures:
        page.add(
          '<p class="note">No training curves: the run has no TensorBoard events '
          "(summaries off, or nothing logged yet).</p>"
        )
      add_figures(page, figures)
    page.add("</section>")

  head = (
    f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    f'<meta name="generator" content="mtx-eval">\n'
    f"<title>{escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
  )
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
  text = render_html(
    report,
    images=images,
    audio=audio,
    piano_rolls=piano_rolls,
    max_audio_seconds=max_audio_seconds,
    max_audio_bytes=max_audio_bytes,
  )
  return write_atomic(Path(out_dir) / filename, text.encode("utf-8"))
