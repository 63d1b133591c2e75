"""The Lakh MIDI Dataset's layouts: every file is named by the md5 of its bytes.

- `lmd_full/<first hex digit of the md5>/<md5>.mid`: every deduplicated file.
- `lmd_matched/<A>/<B>/<C>/<MSD track id>/<md5>.mid`: the files matched to the
  Million Song Dataset, filed under each track they match (A, B, C are the 3rd
  to 5th characters of the track id, `TRABC...`). One file may match several
  tracks and so lie in several folders: it is listed once, from the folder of
  its smallest track id; `msd_track_ids` names all of them.

The split is a hash of the md5, so a file lands in the same split in both
variants and whatever else is in the folder.

`ids_file` keeps a subset: a text file naming the files to keep by md5, as the
MMT reference code trains on the cleansed Lakh subset of the Lakh Pianoroll
Dataset (its `cleansed_ids.txt`). Each line holds an md5 (other columns on the
line, such as an MSD track id, are ignored); blank lines and `#` comments are
skipped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from data_pipeline.corpus import (
  CorpusFile,
  LayoutError,
  midi_files_under,
  require_manual_dir,
  split_by_hash,
)
from mtx.errors import ConfigError

DESCRIPTION = """\
The Lakh MIDI Dataset v0.1 (Raffel, 2016): 176,581 deduplicated MIDI files scraped from the web
(lmd_full), 45,129 of them matched to entries of the Million Song Dataset (lmd_matched). Download
lmd_full.tar.gz or lmd_matched.tar.gz from https://colinraffel.com/projects/lmd/ and pass the
folder holding the unpacked lmd_full/ or lmd_matched/ (or that folder itself) as --manual_dir;
variant="full" (the default when both are there) or "matched" picks one. Licence: CC BY 4.0.
Split: deterministic by a hash of the file's md5, 80/10/10 train/validation/test. The MMT
reference code draws a random 8:1:1 split once and saves it as name lists; a hash gives the same
ratios, needs no list and never moves a file when files are added. Metadata: md5, and for
lmd_matched the Million Song Dataset track id of the folder the file was taken from
(msd_track_id) and every track id the file matches (msd_track_ids, space-separated); both "" for
lmd_full. Option ids_file (mtx-prepare --lmd_ids_file): keep only the files whose md5 a text
file lists, one per line (the MMT reference trains on the cleansed subset of the Lakh Pianoroll
Dataset, its cleansed_ids.txt)."""

METADATA_KEYS = ("md5", "msd_track_id", "msd_track_ids")

VARIANTS = {"full": "lmd_full", "matched": "lmd_matched"}
VALIDATION = 0.1
TEST = 0.1
FIX = (
  "download lmd_full.tar.gz (or lmd_matched.tar.gz) from "
  "https://colinraffel.com/projects/lmd/, unpack it and pass the folder holding lmd_full/ "
  "(or lmd_matched/), or that folder itself"
)

_MD5 = re.compile(r"[0-9a-f]{32}")
_TRACK_ID = re.compile(r"TR[A-Z0-9]{16}")
_SHARD = {"full": re.compile(r"[0-9a-f]"), "matched": re.compile(r"[A-Z]")}
_LAYOUT = {
  "full": "lmd_full/<0-9a-f>/<md5>.mid",
  "matched": "lmd_matched/<A-Z>/<A-Z>/<A-Z>/<MSD track id>/<md5>.mid",
}

_log = logging.getLogger(__name__)


def _layout_of(folder: Path) -> str | None:
  """ "full" or "matched" if `folder` has that variant's top-level shard folders."""
  names = [p.name for p in folder.iterdir() if p.is_dir()]
  for variant, shard in _SHARD.items():
    if any(shard.fullmatch(name) for name in names):
      return variant
  return None


def find_root(manual_dir: str | Path, variant: str | None = None) -> tuple[Path, str]:
  """The lmd_full/ or lmd_matched/ folder to read, and which variant it is."""
  if variant is not None and variant not in VARIANTS:
    raise ConfigError(
      f"Lakh MIDI Dataset: unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}"
    )
  manual_dir = require_manual_dir(manual_dir, "Lakh MIDI Dataset", FIX)
  for candidate in [variant] if variant else list(VARIANTS):
    if (manual_dir / VARIANTS[candidate]).is_dir():
      return manual_dir / VARIANTS[candidate], candidate
  found = _layout_of(manual_dir)
  if found is not None and variant in (None, found):
    return manual_dir, found
  if found is not None:
    raise LayoutError(
      f"--manual_dir {manual_dir}: has {VARIANTS[found]}'s layout "
      f"({_LAYOUT[found]}), not {VARIANTS[variant]}'s; pass variant='{found}' "
      f"or the folder holding {VARIANTS[variant]}/"
    )
  wanted = variant or "full"
  raise LayoutError(
    f"--manual_dir {manual_dir}: no {VARIANTS[wanted]}/ folder in it, and it is "
    f"not itself laid out as {_LAYOUT[wanted]}; Lakh MIDI Dataset: {FIX}"
  )


def read_ids(ids_file: str | Path) -> set[str]:
  """The md5 ids an `ids_file` lists; a LayoutError for a missing or empty
  file, or a line without an md5 (naming the line)."""
  path = Path(ids_file).expanduser()
  what = "pass a text file with one Lakh md5 per line (e.g. MMT's cleansed_ids.txt)"
  try:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
  except OSError as e:
    raise LayoutError(
      f"--lmd_ids_file {path}: cannot read it ({e.strerror or e}); {what}"
    ) from None
  ids = set()
  for number, line in enumerate(lines, 1):
    text = line.split("#", 1)[0].strip()
    if not text:
      continue
    md5 = next((word.lower() for word in text.split() if _MD5.fullmatch(word.lower())), None)
    if md5 is None:
      raise LayoutError(
        f"--lmd_ids_file {path}, line {number}: {text[:80]!r} holds no md5 (32 hex digits); {what}"
      )
    ids.add(md5)
  if not ids:
    raise LayoutError(f"--lmd_ids_file {path}: no md5 in it; {what}")
  return ids


def _keep_listed(
  by_md5: dict[str, list[Path]], ids_file: str | Path, root: Path
) -> dict[str, list[Path]]:
  """The files whose md5 `ids_file` lists; an error if none is here."""
  ids = read_ids(ids_file)
  kept = {md5: paths for md5, paths in by_md5.items() if md5 in ids}
  if not kept:
    raise LayoutError(
      f"--lmd_ids_file {ids_file}: none of its {len(ids):,} md5 ids names a "
      f"file under {root} (e.g. {min(ids)}); is it a list of this corpus' "
      "files, and --manual_dir the right folder?"
    )
  if len(kept) < len(ids):
    missing = sorted(ids - set(kept))
    _log.warning(
      "Lakh MIDI Dataset: %d of the %d ids in %s name no file under %s; %d files "
      "kept (the first missing: %s)",
      len(missing),
      len(ids),
      ids_file,
      root,
      len(kept),
      missing[0],
    )
  return kept


def list_files(
  manual_dir: str | Path, *, variant: str | None = None, ids_file: str | Path | None = None
) -> list[CorpusFile]:
  """One `CorpusFile` per md5 (the key), sorted by md5; only the md5s
  `ids_file` lists if given."""
  root, variant = find_root(manual_dir, variant)
  by_md5: dict[str, list[Path]] = {}
  ignored = []
  for path in midi_files_under(root):
    md5 = path.stem.lower()
    if _MD5.fullmatch(md5):
      by_md5.setdefault(md5, []).append(path)
    else:
      ignored.append(path)
  if not by_md5:
    raise LayoutError(
      f"{root}: no MIDI file named by its md5 in the layout "
      f"{_LAYOUT[variant]}; Lakh MIDI Dataset: {FIX}"
    )
  if ids_file is not None:
    by_md5 = _keep_listed(by_md5, ids_file, root)
  if ignored:
    _log.warning(
      "Lakh MIDI Dataset: %d MIDI files under %s are not named <md5>.mid and are "
      "not part of the release; ignored (the first: %s)",
      len(ignored),
      root,
      ignored[0],
    )
  files = []
  for md5, paths in sorted(by_md5.items()):
    tracks = sorted({p.parent.name for p in paths if _TRACK_ID.fullmatch(p.parent.name)})
    taken = paths[0]  # sorted by path: under lmd_matched, the smallest track id's folder
    track = taken.parent.name if taken.parent.name in tracks else ""
    files.append(
      CorpusFile(
        path=taken,
        split=split_by_hash(md5, VALIDATION, TEST),
        key=md5,
        metadata=dict(md5=md5, msd_track_id=track, msd_track_ids=" ".join(tracks)),
      )
    )
  return files
