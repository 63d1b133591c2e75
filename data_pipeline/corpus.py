"""What a corpus layout hands the builders: its MIDI files, split and metadata.

Each corpus module (`maestro`, `lmd`, `sod`, `symphonynet`, `midi_folder`,
`jsb_chorales`) has a pure function `list_files(manual_dir, **options) ->
list[CorpusFile]` that reads the release's layout (csv/json metadata, folder
structure) and assigns every file its split. Builders and `mtx-prepare` only
see `CorpusFile`s, so a new corpus is one new layout function.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
from pathlib import Path

from mtx.errors import ConfigError

SPLITS = ("train", "validation", "test")


class LayoutError(ConfigError):
  """A `manual_dir` does not look like the corpus' release: the message names
  the missing file or folder of the layout and says what to pass instead."""


@dataclasses.dataclass(frozen=True)
class CorpusFile:
  """One MIDI file of a corpus.

  path: the file on disk.
  split: "train", "validation" or "test".
  key: a stable unique id inside the corpus (e.g. the path relative to the
    corpus root); the builder's example key.
  metadata: what the corpus says of the file (composer, title, year, ...): str
    values only, "" where unknown; every file of one corpus has the same keys.
  md5: the md5 of the file's bytes when the layout already read them (for the
    split); "" otherwise, and the converter hashes the file. Saves reading and
    hashing every file twice.
  """

  path: Path
  split: str
  key: str
  metadata: dict[str, str] = dataclasses.field(default_factory=dict)
  md5: str = ""


def md5_of_file(path: str | Path) -> str:
  """Hex md5 of a file's bytes (Lakh names its files by it)."""
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def split_by_hash(text: str, validation: float, test: float) -> str:
  """Deterministic split from a hash of `text`: the same file always lands in
  the same split, whatever else is in the corpus."""
  if not (0 <= validation and 0 <= test and validation + test < 1):
    raise ValueError(
      f"split ratios validation={validation}, test={test} must be >= 0 and sum to less than 1"
    )
  # surrogateescape: a file name that is not UTF-8 hashes as its own bytes.
  digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
  fraction = int(digest[:15], 16) / 16**15
  if fraction < test:
    return "test"
  if fraction < test + validation:
    return "validation"
  return "train"


# .kar: karaoke files, Standard MIDI Files with lyrics; .rmi: MIDI in a RIFF wrapper.
MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")


def midi_files_under(root: Path) -> list[Path]:
  """Every MIDI file (.mid/.midi/.kar/.rmi, any case) under `root`, recursively, sorted by
  the path relative to `root`. Hidden entries, `__MACOSX/` folders and `._*`
  files are skipped: zips made on a Mac carry them and they are not MIDI.

  Symbolic links to folders are followed (a corpus assembled from links, e.g. one
  folder per source linked into one root, is listed whole), each real folder once:
  a link back to a folder already walked (a loop, or a second way into the same
  folder) adds nothing, so the walk always ends. A folder that cannot be listed is
  a LayoutError naming it: its files would otherwise be left out unseen."""
  visited: set[tuple[int, int]] = set()
  unreadable: list[OSError] = []
  found = []
  for folder, subfolders, files in os.walk(root, followlinks=True, onerror=unreadable.append):
    try:
      info = os.stat(folder)
    except OSError as e:
      unreadable.append(e)
      subfolders[:] = []
      continue
    if (info.st_dev, info.st_ino) in visited:
      subfolders[:] = []
      continue
    visited.add((info.st_dev, info.st_ino))
    subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__MACOSX")
    found.extend(
      Path(folder, name)
      for name in files
      if not name.startswith(".") and name.lower().endswith(MIDI_SUFFIXES)
    )
  if unreadable:
    e = unreadable[0]
    raise LayoutError(
      f"{path_text(e.filename or root)}: cannot list this folder "
      f"({e.strerror or e}) under {path_text(root)}; fix its permissions, or "
      "move it out of the corpus"
    )
  return sorted(found, key=lambda p: p.relative_to(root).parts)


def find_midi_files(folder: str | os.PathLike, flag: str) -> list[Path]:
  """`midi_files_under(folder)`; a LayoutError naming `--flag` when `folder` is no
  readable folder or holds no MIDI file (what `midi_folder` and `mtx-tokenize` read)."""
  root = Path(folder)
  problem = folder_problem(root)
  if problem:
    raise LayoutError(f"--{flag} {path_text(root)}: {problem}; pass a folder of MIDI files.")
  paths = midi_files_under(root)
  if not paths:
    raise LayoutError(
      f"--{flag} {path_text(root)}: no MIDI file (.mid, .midi, .kar, .rmi) in "
      "it (searched recursively); pass the folder that holds them."
    )
  return paths


def folder_problem(path: str | os.PathLike) -> str | None:
  """Why `path` is not a folder one can read, in words ("no such folder", "is a file,
  not a folder", "a symbolic link loop", "a broken symbolic link to X", "permission
  denied"), or None when it is one."""
  path = Path(path)
  try:
    if path.is_dir():
      os.listdir(path)
      return None
    os.stat(path)
  except OSError as e:
    return _os_problem(path, e, "folder")
  return "is a file, not a folder"


def file_problem(path: str | os.PathLike) -> str | None:
  """Why `path` cannot be opened as a file, in the words of `folder_problem`, or None."""
  path = Path(path)
  try:
    os.stat(path)
  except OSError as e:
    return _os_problem(path, e, "file")
  return None


def _os_problem(path: Path, error: OSError, kind: str) -> str:
  if error.errno == errno.ELOOP:
    return "a symbolic link loop (the link leads back to itself); fix or remove the link"
  if error.errno == errno.ENOENT and os.path.islink(path):
    return f"a broken symbolic link (to {path_text(os.readlink(path))}, which does not exist)"
  if error.errno in (errno.ENOENT, errno.ENOTDIR):
    return f"no such {kind}"
  if error.errno == errno.EACCES:
    return "permission denied; fix its permissions"
  return error.strerror or str(error)


def require_manual_dir(manual_dir: str | os.PathLike, corpus: str, fix: str) -> Path:
  """`manual_dir` as a Path; a `LayoutError` saying `fix` (where to download the
  corpus and which folder to pass) if it is missing, a file or empty."""
  path = Path(manual_dir).expanduser()
  problem = folder_problem(path)
  if problem is None and not any(path.iterdir()):
    problem = "the folder is empty"
  if problem is None:
    return path
  raise LayoutError(f"--manual_dir {path_text(path)}: {problem}; {corpus}: {fix}")


# ---- file names as text ----
#
# On Linux a file name is bytes, not text: it may hold bytes that are not UTF-8, tabs
# and newlines. `path_text` writes one as one line of readable UTF-8 (what reports and
# messages show), and `path_from_text` gives back the very same name.

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPE = re.compile(r"\\(\\|t|n|r|x[0-9a-fA-F]{2})")


def path_text(path: str | bytes | os.PathLike) -> str:
  """A file name (or any text from one, e.g. an error message) as one line of UTF-8,
  reversibly: a backslash, tab, newline and carriage return become `\\\\`, `\\t`, `\\n`,
  `\\r`; another control character and a byte that is not UTF-8 become `\\xNN`;
  everything else is kept (`café.mid` stays `café.mid`). `path_from_text` undoes it."""
  if not isinstance(path, str):
    path = os.fsdecode(path)
  out = []
  for char in path:
    code = ord(char)
    if char in _ESCAPES:
      out.append(_ESCAPES[char])
    elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
      out.append(f"\\x{code - 0xDC00:02x}")
    elif code < 0x20 or code == 0x7F:
      out.append(f"\\x{code:02x}")
    else:
      out.append(char)
  return "".join(out)


def path_from_text(text: str) -> str:
  """The file name `path_text` wrote (as `os.fsdecode` gives it: pass it to open())."""
  parts, start = [], 0
  for match in _UNESCAPE.finditer(text):
    parts.append(text[start : match.start()].encode("utf-8", "surrogateescape"))
    code = match.group(1)
    parts.append(
      {"\\": b"\\", "t": b"\t", "n": b"\n", "r": b"\r"}.get(code) or bytes([int(code[1:], 16)])
    )
    start = match.end()
  parts.append(text[start:].encode("utf-8", "surrogateescape"))
  return os.fsdecode(b"".join(parts))
