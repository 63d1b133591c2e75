"""Small copies of each corpus release's layout, built in a tmp folder from real MIDI files.

Each builder links real files (symlinks; copies where the file system has none)
into the folder structure of the release, writes the metadata the release
carries (MAESTRO's csv/json, SOD's instrumentation csv), and returns what a
reader of that layout must find, computed here from what was written, never
from the code under test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

SPLITS = ("train", "validation", "test")


def place(source: Path, target: Path) -> Path:
  """Puts the real file `source` at `target` (a symlink, or a copy)."""
  target.parent.mkdir(parents=True, exist_ok=True)
  try:
    os.symlink(Path(source).resolve(), target)
  except OSError:
    shutil.copyfile(source, target)
  return target


def md5_hex(path: Path) -> str:
  return hashlib.md5(Path(path).read_bytes()).hexdigest()


# --- MAESTRO -------------------------------------------------------------------------------------

MAESTRO_COLUMNS = (
  "canonical_composer",
  "canonical_title",
  "split",
  "year",
  "midi_filename",
  "audio_filename",
  "duration",
)
_COMPOSERS = ("Frédéric Chopin", "Johann Sebastian Bach", "Alban Berg", "Franz Liszt")


def maestro_rows(sources: list[Path]) -> list[dict]:
  """One table row per source: split cycling train/validation/test, a year folder
  per row, a title with a comma and quotes (csv quoting), a non-ASCII composer."""
  rows = []
  for i, source in enumerate(sources):
    year = 2004 + i % 4
    name = f"{year}/MIDI-Unprocessed_{i:02d}_R1_{year}_{Path(source).stem}.midi"
    rows.append(
      dict(
        canonical_composer=_COMPOSERS[i % len(_COMPOSERS)],
        canonical_title=f'Sonata No. {i}, "{Path(source).stem}"',
        split=SPLITS[i % 3],
        year=year,
        midi_filename=name,
        audio_filename=name.replace(".midi", ".wav"),
        duration=round(1 + Path(source).stat().st_size / 997, 3),
        source=Path(source),
      )
    )
  return rows


def expected_maestro_metadata(row: dict) -> dict[str, str]:
  return dict(
    composer=row["canonical_composer"],
    title=row["canonical_title"],
    year=str(row["year"]),
    duration=repr(row["duration"]),
  )


def make_maestro(
  root: Path,
  sources: list[Path],
  formats=("csv", "json"),
  release: str = "maestro-v3.0.0",
  json_orient: str = "columns",
) -> tuple[Path, list[dict]]:
  """`root/<release>/` with the year folders and the table in `formats`.

  json_orient: "columns" as v3.0.0 writes it, "records" (a list of rows) as v2.0.0.
  Returns the release folder and the rows.
  """
  folder = Path(root) / release
  rows = maestro_rows(sources)
  for row in rows:
    place(row["source"], folder / row["midi_filename"])
  folder.mkdir(parents=True, exist_ok=True)
  if "csv" in formats:
    with open(folder / f"{release}.csv", "w", newline="", encoding="utf-8") as f:
      writer = csv.DictWriter(f, fieldnames=MAESTRO_COLUMNS, extrasaction="ignore")
      writer.writeheader()
      writer.writerows(rows)
  if "json" in formats:
    table = [{c: row[c] for c in MAESTRO_COLUMNS} for row in rows]
    if json_orient == "columns":
      table = {c: {str(i): row[c] for i, row in enumerate(table)} for c in MAESTRO_COLUMNS}
    (folder / f"{release}.json").write_text(json.dumps(table, ensure_ascii=False), "utf-8")
  return folder, rows


# --- Lakh ----------------------------------------------------------------------------------------


def make_lmd_full(root: Path, sources: list[Path]) -> dict[str, Path]:
  """`root/lmd_full/<md5[0]>/<md5>.mid` for each source; returns md5 -> file."""
  files = {}
  for source in sources:
    md5 = md5_hex(source)
    files[md5] = place(source, Path(root) / "lmd_full" / md5[0] / f"{md5}.mid")
  return files


def track_id(md5: str, n: int) -> str:
  """A Million Song Dataset track id (TR + 5 letters + 11 of [0-9A-F]), made up."""
  digest = hashlib.sha1(f"{md5}/{n}".encode()).hexdigest().upper()
  return "TR" + "".join(chr(ord("A") + int(c, 16)) for c in digest[:5]) + digest[5:16]


def make_lmd_matched(root: Path, sources: list[Path], duplicated: int = 2) -> dict[str, list[str]]:
  """`root/lmd_matched/A/B/C/<track id>/<md5>.mid`; the first `duplicated`
  files match three tracks each, the others one. Returns md5 -> sorted track ids."""
  tracks = {}
  for i, source in enumerate(sources):
    md5 = md5_hex(source)
    ids = sorted(track_id(md5, n) for n in range(3 if i < duplicated else 1))
    for tid in ids:
      place(source, Path(root) / "lmd_matched" / tid[2] / tid[3] / tid[4] / tid / f"{md5}.mid")
    tracks[md5] = ids
  return tracks


# --- SOD -----------------------------------------------------------------------------------------

_ORCHESTRA = (
  ("Flute 1", "Flute"),
  ("Oboe", "Oboe"),
  ("Violin I", "Violin"),
  ("Violin II", "Violin"),
  ("Cello", "Violoncello"),
)


def make_sod(root: Path, sources: list[Path]) -> list[dict]:
  """`root/SOD/<sub-corpus>/<piece>/<name>_orch.mid` (+ `.csv`); every third
  piece also has a `_solo.mid` piano version; piece 1 has no csv.
  Returns one dict per MIDI file: key, source, sub_corpus, piece, instruments."""
  sod = Path(root) / "SOD"
  expected = []
  sources = list(sources)
  piece = 0
  while sources:
    sub_corpus = ("Kunstderfuge", "bouliane")[piece % 2]
    folder = sod / sub_corpus / str(piece)
    roles = ["orch", "solo"] if piece % 3 == 2 and len(sources) > 1 else ["orch"]
    for role in roles:
      source = sources.pop(0)
      name = f"{Path(source).stem}_{role}"
      place(source, folder / f"{name}.mid")
      tracks = _ORCHESTRA if role == "orch" else (("Piano", "Piano"),)
      instruments = ""
      if piece != 1:
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
          writer = csv.writer(f, delimiter=";")
          writer.writerow([t for t, _ in tracks])
          writer.writerow([i for _, i in tracks])
        instruments = ", ".join(dict.fromkeys(i for _, i in tracks))
      expected.append(
        dict(
          key=f"{sub_corpus}/{piece}/{name}.mid",
          source=source,
          sub_corpus=sub_corpus,
          piece=str(piece),
          instruments=instruments,
        )
      )
    piece += 1
  # What the release carries beside the pieces: a csv per sub-corpus, and what a Mac zip adds.
  (sod / "bouliane.csv").write_text("piece;name\n", "utf-8")
  (sod / "__MACOSX" / "0").mkdir(parents=True)
  (sod / "__MACOSX" / "0" / "._x_orch.mid").write_bytes(b"\0\5\26\7")
  (sod / "Kunstderfuge" / "0" / "._x_orch.mid").write_bytes(b"\0\5\26\7")
  return expected


# --- SymphonyNet ---------------------------------------------------------------------------------


def make_symphonynet(root: Path, sources: list[Path]) -> dict[str, Path]:
  """`root/SymphonyNet_Dataset/{classical,contemporary}/...`, one file a level
  deeper and one with a `.midi` suffix. Returns relative path -> source."""
  dataset = Path(root) / "SymphonyNet_Dataset"
  expected = {}
  for i, source in enumerate(sources):
    collection = ("classical", "contemporary")[i % 2]
    name = f"{collection}/{Path(source).stem}_{i}.mid"
    if i == 2:
      name = f"{collection}/deeper/{Path(source).stem}_{i}.midi"
    place(source, dataset / name)
    expected[name] = Path(source)
  return expected
