"""`bad_files.tsv`: the files a prepare skipped, and why.

One `path<TAB>reason` line per file, each field escaped by `corpus.path_text` (a tab
or newline in a file name, a byte that is not UTF-8), so the report is UTF-8, one
line per file, and `read_bad_files` gives back the exact names.
"""

from __future__ import annotations

import os
from pathlib import Path

from etils import epath

from data_pipeline.convert import TOO_FEW_NOTES, BadFile
from data_pipeline.corpus import path_from_text, path_text

BAD_FILES_REPORT = "bad_files.tsv"


def tsv_line(bad: BadFile) -> str:
  """`path<TAB>reason`, each escaped by `corpus.path_text` (a tab or newline in a file
  name, a byte that is not UTF-8): one line, UTF-8, reversible."""
  return f"{path_text(bad.path)}\t{path_text(bad.reason)}"


def bad_file_of_line(line: str) -> BadFile:
  path, reason = line.split("\t", 1)
  reason = path_from_text(reason)
  return BadFile(path_from_text(path), reason, dropped=reason.startswith(TOO_FEW_NOTES + ":"))


def write_bad_files(path: epath.Path, bad: list[BadFile]) -> None:
  """`bad_files.tsv` (UTF-8): a header, then one `path<TAB>reason` line per bad file,
  each field escaped as `corpus.path_text` says, so every listed path can be opened
  again (`read_bad_files`)."""
  path.write_text("path\treason\n" + "".join(tsv_line(b) + "\n" for b in bad), encoding="utf-8")


def read_bad_files(path: str | os.PathLike) -> list[BadFile]:
  """The rows of a `bad_files.tsv`, with the exact file names (`os.fsdecode` form)."""
  lines = Path(path).read_text(encoding="utf-8").split("\n")[1:]
  return [bad_file_of_line(line) for line in lines if line]
