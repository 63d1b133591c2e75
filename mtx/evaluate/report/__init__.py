"""`report.json` and `report.html`: what `mtx-eval` leaves for a researcher to read.

The JSON is for machines and diffs (`json_file`): the same report gives the same bytes.
The HTML is one self-contained page (`html_page`), rendered generically from the
report's nesting (`cells`, `tables`) with its figures and audio inlined (`media`). Both
files are written atomically, so a report that exists is a complete one.
"""

from mtx.evaluate.report.cells import format_number
from mtx.evaluate.report.html_page import KNOWN_SECTIONS, render_html, write_html
from mtx.evaluate.report.json_file import (
  JSON_SIGNIFICANT_DIGITS,
  dumps_json,
  to_jsonable,
  write_atomic,
  write_json,
)
from mtx.evaluate.report.media import PNG_SIGNATURE, PREVIEW_RATE, wav_clip
from mtx.evaluate.report.tables import COMPARISON_COLUMNS

__all__ = [
  "COMPARISON_COLUMNS",
  "JSON_SIGNIFICANT_DIGITS",
  "KNOWN_SECTIONS",
  "PNG_SIGNATURE",
  "PREVIEW_RATE",
  "dumps_json",
  "format_number",
  "render_html",
  "to_jsonable",
  "wav_clip",
  "write_atomic",
  "write_html",
  "write_json",
]
