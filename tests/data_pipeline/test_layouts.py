"""The corpus layouts of MAESTRO, Lakh, SOD and SymphonyNet, read from small copies of
each release's layout built from real MIDI files (music21's chorales everywhere,
../shared/midi where it is present)."""

from __future__ import annotations

import collections
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_pipeline import lmd, maestro, sod, symphonynet
from data_pipeline.corpus import SPLITS, LayoutError, split_by_hash
from mtx.errors import ConfigError
from mtx.representation import get_codec
from tests.data_pipeline import layout_fixtures as lf
from tests.midi_corpus import NEEDS_SHARED, SHARED_MIDI, SHARED_MIDI_FILES

MODULES = {"maestro": maestro, "lmd": lmd, "sod": sod, "symphonynet": symphonynet}

# Real files per corpus from ../shared/midi: MAESTRO's own files for MAESTRO, Lakh's own
# (named by their md5) plus other pop for Lakh, orchestral scores for SOD and SymphonyNet.
SHARED_SOURCES = {
  "maestro": ["other/miditok/maestro/*.mid"],
  "lmd": ["other/miditok/lakh/*.mid", "other/miditok/pop909/*.mid", "other/symusic/*.midi"],
  "sod": [
    "other/music21/*.mid",
    "other/symusic/minimidi/mahler.mid",
    "other/music21/testPrimitive/test0[3-5].mid",
    "bach_chorales/bwv1.6.mid",
  ],
  "symphonynet": [
    "other/symusic/minimidi/*.mid",
    "other/music21/testPrimitive/test0[4-9].mid",
    "other/miditoolkit/*.mid",
  ],
}


@pytest.fixture(params=["music21", "shared"])
def sources(request) -> dict[str, list[Path]]:
  """Corpus name -> real MIDI files to lay out: music21's chorales (present on any
  install) or the files of ../shared/midi (skipped where that folder is absent)."""
  if request.param == "music21":
    chorales = request.getfixturevalue("music21_chorales")[:8]
    return {corpus: chorales for corpus in MODULES}
  if not SHARED_MIDI_FILES:
    pytest.skip(
      f"no real MIDI corpus at {SHARED_MIDI} (../shared/midi is present in CI; "
      "set MTX_SHARED_MIDI to point elsewhere)"
    )
  return {
    corpus: sorted(p for pattern in patterns for p in SHARED_MIDI.glob(pattern))
    for corpus, patterns in SHARED_SOURCES.items()
  }


def build(corpus: str, root: Path, files: list[Path]) -> Path:
  """The layout of `corpus` under `root`; returns the folder to pass as manual_dir."""
  if corpus == "maestro":
    return lf.make_maestro(root, files)[0]
  if corpus == "lmd":
    lf.make_lmd_full(root, files)
    return root
  if corpus == "sod":
    lf.make_sod(root, files)
    return root / "SOD"
  lf.make_symphonynet(root, files)
  return root / "SymphonyNet_Dataset"


def add_unrelated_file(corpus: str, manual_dir: Path, source: Path) -> None:
  """A new MIDI file where the layout would put one (not named by MAESTRO's table)."""
  target = {
    "maestro": manual_dir / "2004" / "not_in_the_table.midi",
    "lmd": manual_dir / "lmd_full" / "f" / f"{'f' * 32}.mid",
    "sod": manual_dir / "imslp" / "9" / "new_orch.mid",
    "symphonynet": manual_dir / "contemporary" / "new.mid",
  }[corpus]
  lf.place(source, target)


def as_tuples(files, root: Path | None = None):
  return [(f.key, f.split, f.metadata, f.path.relative_to(root) if root else f.path) for f in files]


# --- What every layout promises ------------------------------------------------------------------


@pytest.mark.parametrize("corpus", MODULES)
def test_every_file_has_a_split_a_unique_sorted_key_and_the_metadata_keys(
  corpus, sources, tmp_path
):
  module = MODULES[corpus]
  files = module.list_files(build(corpus, tmp_path, sources[corpus]))
  assert isinstance(module.DESCRIPTION, str) and "Split" in module.DESCRIPTION
  keys = [f.key for f in files]
  assert keys == sorted(set(keys)) and len(files) > 0
  for f in files:
    assert f.split in SPLITS
    assert tuple(f.metadata) == module.METADATA_KEYS
    assert all(isinstance(v, str) for v in f.metadata.values())
    assert f.path.is_file()


@pytest.mark.parametrize("corpus", MODULES)
def test_listing_is_deterministic_and_the_same_wherever_the_corpus_lies(corpus, sources, tmp_path):
  module = MODULES[corpus]
  first_dir = build(corpus, tmp_path / "a", sources[corpus])
  second_dir = build(corpus, tmp_path / "elsewhere" / "b", sources[corpus])
  first = module.list_files(first_dir)
  assert module.list_files(first_dir) == first
  assert as_tuples(module.list_files(second_dir), second_dir) == as_tuples(first, first_dir)


@pytest.mark.parametrize("corpus", MODULES)
def test_adding_a_file_moves_no_other_file(corpus, sources, tmp_path, music21_chorales):
  module = MODULES[corpus]
  manual_dir = build(corpus, tmp_path, sources[corpus])
  before = module.list_files(manual_dir)
  add_unrelated_file(corpus, manual_dir, music21_chorales[-1])
  after = {f.key: f for f in module.list_files(manual_dir)}
  assert all(after[f.key] == f for f in before)
  assert len(after) == len(before) + (0 if corpus == "maestro" else 1)


@pytest.mark.parametrize("corpus", MODULES)
def test_a_missing_file_or_empty_manual_dir_is_a_layout_error(corpus, tmp_path):
  module = MODULES[corpus]
  missing = tmp_path / "no_such_folder"
  with pytest.raises(LayoutError, match="no such folder") as e:
    module.list_files(missing)
  assert str(missing) in str(e.value) and "https://" in str(e.value)
  a_file = tmp_path / "a_file.mid"
  a_file.write_bytes(b"MThd")
  with pytest.raises(LayoutError, match="is a file, not a folder"):
    module.list_files(a_file)
  (tmp_path / "empty").mkdir()
  with pytest.raises(LayoutError, match="the folder is empty"):
    module.list_files(tmp_path / "empty")


# --- MAESTRO -------------------------------------------------------------------------------------


@pytest.mark.parametrize("formats", [("csv",), ("json",), ("csv", "json")])
def test_maestro_lists_the_tables_files_with_its_split_and_metadata(formats, sources, tmp_path):
  folder, rows = lf.make_maestro(tmp_path, sources["maestro"], formats=formats)
  files = maestro.list_files(folder)
  by_name = {row["midi_filename"]: row for row in rows}
  assert [f.key for f in files] == sorted(by_name)
  for f in files:
    row = by_name[f.key]
    assert f.split == row["split"]
    assert f.metadata == lf.expected_maestro_metadata(row)
    assert f.path == folder / row["midi_filename"]
    assert f.path.read_bytes() == row["source"].read_bytes()


def test_maestro_reads_the_release_folder_inside_manual_dir_and_v2_tables(sources, tmp_path):
  folder, _ = lf.make_maestro(tmp_path / "v3", sources["maestro"])
  expected = maestro.list_files(folder)
  assert maestro.list_files(tmp_path / "v3") == expected  # the folder holding maestro-v3.0.0/
  v2, _ = lf.make_maestro(
    tmp_path / "v2",
    sources["maestro"],
    formats=("json",),
    release="maestro-v2.0.0",
    json_orient="records",
  )
  assert as_tuples(maestro.list_files(v2), v2) == as_tuples(expected, folder)


def test_maestro_keeps_a_missing_file_for_the_bad_file_report(sources, tmp_path, caplog):
  folder, rows = lf.make_maestro(tmp_path, sources["maestro"])
  gone = rows[1]["midi_filename"]
  (folder / gone).unlink()
  with caplog.at_level(logging.WARNING, logger="data_pipeline.maestro"):
    files = {f.key: f for f in maestro.list_files(folder)}
  assert len(files) == len(rows) and not files[gone].path.exists()
  assert files[gone].split == rows[1]["split"]
  assert "1 of the" in caplog.text and gone in caplog.text


def test_maestro_with_none_of_its_files_names_the_first_missing_one(sources, tmp_path):
  folder, rows = lf.make_maestro(tmp_path, sources["maestro"])
  for row in rows:
    shutil.rmtree(folder / str(row["year"]), ignore_errors=True)
  first = sorted(row["midi_filename"] for row in rows)[0]
  with pytest.raises(LayoutError, match="none of the") as e:
    maestro.list_files(folder)
  assert first in str(e.value) and "year folders" in str(e.value)


def test_maestro_bad_tables_are_layout_errors_naming_the_file(sources, tmp_path):
  folder, _ = lf.make_maestro(tmp_path, sources["maestro"], formats=("csv",))
  table = folder / "maestro-v3.0.0.csv"
  good = table.read_text("utf-8")
  table.unlink()
  with pytest.raises(LayoutError, match="no maestro-v3.0.0.csv"):
    maestro.list_files(folder)
  table.write_text(good.replace("split", "fold", 1), "utf-8")
  with pytest.raises(LayoutError, match="no 'split' column") as e:
    maestro.list_files(folder)
  assert str(table) in str(e.value)
  table.write_text(good.replace(",validation,", ",dev,", 1), "utf-8")
  with pytest.raises(LayoutError, match="split 'dev'"):
    maestro.list_files(folder)
  table.write_text(good.splitlines()[0] + "\n", "utf-8")
  with pytest.raises(LayoutError, match="no rows"):
    maestro.list_files(folder)
  table.unlink()
  json_table = folder / "maestro-v3.0.0.json"
  for text in ("{not json", json.dumps({"split": ["train"]})):
    json_table.write_text(text, "utf-8")
    with pytest.raises(LayoutError) as e:
      maestro.list_files(folder)
    assert str(json_table) in str(e.value)


# --- Lakh ----------------------------------------------------------------------------------------


def test_lakh_full_lists_one_file_per_md5_with_the_md5_split(sources, tmp_path):
  made = lf.make_lmd_full(tmp_path, sources["lmd"])
  files = lmd.list_files(tmp_path)
  assert [f.key for f in files] == sorted(made)
  for f in files:
    assert f.path == made[f.key] and lf.md5_hex(f.path) == f.key
    assert f.split == split_by_hash(f.key, validation=0.1, test=0.1)
    assert f.metadata == dict(md5=f.key, msd_track_id="", msd_track_ids="")
  assert lmd.list_files(tmp_path / "lmd_full") == files


@NEEDS_SHARED
def test_lakh_files_of_the_release_are_named_by_their_md5():
  lakh = sorted(SHARED_MIDI.glob("other/miditok/lakh/*.mid"))
  assert lakh and all(lf.md5_hex(p) == p.stem for p in lakh)


def test_lakh_matched_keeps_one_file_per_md5_and_names_all_its_tracks(sources, tmp_path):
  tracks = lf.make_lmd_matched(tmp_path, sources["lmd"], duplicated=2)
  assert sum(len(ids) > 1 for ids in tracks.values()) == 2
  files = lmd.list_files(tmp_path / "lmd_matched")
  assert [f.key for f in files] == sorted(tracks)
  for f in files:
    ids = tracks[f.key]
    assert f.metadata == dict(md5=f.key, msd_track_id=ids[0], msd_track_ids=" ".join(ids))
    assert f.path.parent.name == ids[0] and f.path.name == f"{f.key}.mid"
    assert f.split == split_by_hash(f.key, validation=0.1, test=0.1)


def test_lakh_variant_picks_the_folder_and_a_file_shares_its_split_in_both(sources, tmp_path):
  lf.make_lmd_full(tmp_path, sources["lmd"])
  lf.make_lmd_matched(tmp_path, sources["lmd"][:4])
  full = lmd.list_files(tmp_path)  # both present: full is the default
  assert full == lmd.list_files(tmp_path, variant="full")
  matched = lmd.list_files(tmp_path, variant="matched")
  assert all("lmd_matched" in f.path.parts for f in matched) and len(matched) < len(full)
  assert lmd.list_files(tmp_path / "lmd_matched") == matched  # inferred from the layout
  split_in_full = {f.key: f.split for f in full}
  assert all(split_in_full[f.key] == f.split for f in matched)


def test_lakh_wrong_variant_unknown_variant_and_stray_files(sources, tmp_path, caplog):
  lf.make_lmd_matched(tmp_path, sources["lmd"][:3])
  with pytest.raises(LayoutError, match="variant='matched'") as e:
    lmd.list_files(tmp_path / "lmd_matched", variant="full")
  assert "lmd_full" in str(e.value)
  with pytest.raises(LayoutError, match="no lmd_full/ folder"):
    lmd.list_files(tmp_path, variant="full")
  with pytest.raises(ConfigError, match="unknown variant 'aligned'"):
    lmd.list_files(tmp_path, variant="aligned")
  expected = lmd.list_files(tmp_path)
  lf.place(sources["lmd"][0], tmp_path / "lmd_matched" / "A" / "not_an_md5.mid")
  with caplog.at_level(logging.WARNING, logger="data_pipeline.lmd"):
    assert lmd.list_files(tmp_path) == expected
  assert "not_an_md5.mid" in caplog.text


def test_lakh_folders_without_the_layout_are_layout_errors(sources, tmp_path):
  lf.place(sources["lmd"][0], tmp_path / "midi" / "song.mid")
  with pytest.raises(LayoutError, match="no lmd_full/ folder") as e:
    lmd.list_files(tmp_path)
  assert "lmd_full.tar.gz" in str(e.value)
  lf.place(sources["lmd"][0], tmp_path / "lmd_full" / "0" / "song.mid")
  with pytest.raises(LayoutError, match="no MIDI file named by its md5"):
    lmd.list_files(tmp_path)


def test_lakh_ids_file_keeps_only_the_files_it_lists(sources, tmp_path, caplog):
  made = lf.make_lmd_full(tmp_path, sources["lmd"])
  keep = sorted(made)[::2]
  ids = tmp_path / "cleansed_ids.txt"
  # LPD's list style: an md5 then an MSD track id; a comment, a blank line, upper case.
  ids.write_text(
    "# the cleansed subset\n\n"
    + "".join(
      f"{md5.upper() if i == 0 else md5}    {lf.track_id(md5, 0)}\n" for i, md5 in enumerate(keep)
    )
  )
  files = lmd.list_files(tmp_path, ids_file=ids)
  everything = {f.key: f for f in lmd.list_files(tmp_path)}
  assert [f.key for f in files] == keep
  assert files == [everything[md5] for md5 in keep]  # the same split and metadata
  # An id naming no file here: the others are kept, and the gap is logged.
  ids.write_text("".join(f"{md5}\n" for md5 in keep) + "f" * 32 + "\n")
  with caplog.at_level(logging.WARNING, logger="data_pipeline.lmd"):
    assert lmd.list_files(tmp_path, ids_file=ids) == files
  assert "1 of the" in caplog.text and "f" * 32 in caplog.text


def test_lakh_ids_file_missing_empty_malformed_or_naming_nothing_is_a_layout_error(
  sources, tmp_path
):
  made = lf.make_lmd_full(tmp_path / "corpus", sources["lmd"][:3])
  ids = tmp_path / "ids.txt"
  with pytest.raises(LayoutError, match="cannot read it") as e:
    lmd.list_files(tmp_path / "corpus", ids_file=ids)
  assert str(ids) in str(e.value) and "one Lakh md5 per line" in str(e.value)
  cases = {
    "": "no md5 in it",
    "# only a comment\n\n": "no md5 in it",
    f"{min(made)}\nTRAAAGR128F425B14B not_an_id\n": "line 2: 'TRAAAGR128F425B14B not_an_id' "
    "holds no md5",
    "0" * 32 + "\n" + "1" * 32 + "\n": "none of its 2 md5 ids names a file under",
  }
  for text, message in cases.items():
    ids.write_text(text)
    with pytest.raises(LayoutError, match=message):
      lmd.list_files(tmp_path / "corpus", ids_file=ids)


# --- SOD -----------------------------------------------------------------------------------------


def test_sod_lists_every_piece_file_split_by_piece_with_its_instruments(sources, tmp_path):
  expected = {e["key"]: e for e in lf.make_sod(tmp_path, sources["sod"])}
  assert any(e["key"].endswith("_solo.mid") for e in expected.values())
  files = sod.list_files(tmp_path)  # the folder holding SOD/
  assert [f.key for f in files] == sorted(expected)
  for f in files:
    e = expected[f.key]
    assert f.metadata == dict(
      sub_corpus=e["sub_corpus"], piece=e["piece"], instruments=e["instruments"]
    )
    assert f.split == split_by_hash(f"{e['sub_corpus']}/{e['piece']}", validation=0.1, test=0.1)
    assert f.path.read_bytes() == e["source"].read_bytes()
  assert any(not e["instruments"] for e in expected.values())  # a file without its csv
  assert sod.list_files(tmp_path / "SOD") == files


def test_sod_files_outside_piece_folders_are_ignored_and_none_is_an_error(
  sources, tmp_path, caplog
):
  lf.make_sod(tmp_path, sources["sod"][:3])
  expected = sod.list_files(tmp_path)
  lf.place(sources["sod"][0], tmp_path / "SOD" / "Kunstderfuge" / "loose.mid")
  with caplog.at_level(logging.WARNING, logger="data_pipeline.sod"):
    assert sod.list_files(tmp_path) == expected
  assert "loose.mid" in caplog.text
  flat = tmp_path / "flat"
  lf.place(sources["sod"][0], flat / "piece_orch.mid")
  with pytest.raises(LayoutError, match=r"<sub-corpus>/<piece>/") as e:
    sod.list_files(flat)
  assert "SOD.zip" in str(e.value)


# --- SymphonyNet ---------------------------------------------------------------------------------


def test_symphonynet_lists_the_nested_tree_split_by_relative_path(sources, tmp_path):
  expected = lf.make_symphonynet(tmp_path, sources["symphonynet"])
  files = symphonynet.list_files(tmp_path)  # the folder holding SymphonyNet_Dataset/
  assert [f.key for f in files] == sorted(expected)
  for f in files:
    assert f.split == split_by_hash(f.key, validation=0.1, test=0.1)
    assert f.metadata == dict(name=f.key, collection=f.key.split("/")[0])
    assert f.path.read_bytes() == expected[f.key].read_bytes()
  assert symphonynet.list_files(tmp_path / "SymphonyNet_Dataset") == files


def test_symphonynet_folder_without_midi_is_a_layout_error(tmp_path):
  (tmp_path / "SymphonyNet_Dataset" / "classical").mkdir(parents=True)
  (tmp_path / "SymphonyNet_Dataset" / "classical" / "notes.txt").write_text("not midi")
  with pytest.raises(LayoutError, match=r"no MIDI file \(\.mid, \.midi, \.kar, \.rmi\)") as e:
    symphonynet.list_files(tmp_path)
  assert "SymphonyNet_Dataset" in str(e.value)


# --- The builders on these layouts ---------------------------------------------------------------


def prepare_mmt(corpus: str, manual_dir: Path, data_dir: Path):
  from data_pipeline.builders import get_builder_class
  from data_pipeline.prepare import prepare

  builder = get_builder_class(corpus)(
    config="mmt", data_dir=data_dir, num_workers=1, progress=False
  )
  return builder, prepare(builder, manual_dir=manual_dir)


@pytest.mark.parametrize("corpus", MODULES)
def test_the_mmt_builder_writes_every_listed_file_to_its_split(corpus, music21_chorales, tmp_path):
  manual_dir = build(corpus, tmp_path / "corpus", music21_chorales[:6])
  listed = MODULES[corpus].list_files(manual_dir)
  builder, summary = prepare_mmt(corpus, manual_dir, tmp_path / "data")
  assert summary.skipped == 0
  assert summary.split_sizes == dict(collections.Counter(f.split for f in listed))
  codec = get_codec("mmt", overflow="truncate")
  for split in summary.split_sizes:
    source = builder.as_data_source(split=split)
    examples = {source[i]["path"].decode(): source[i] for i in range(len(source))}
    files = [f for f in listed if f.split == split]
    assert sorted(examples) == sorted(str(f.path) for f in files)
    for f in files:
      example = examples[str(f.path)]
      np.testing.assert_array_equal(example["tokens"], codec.encode(f.path))
      assert {k: v.decode() for k, v in example["metadata"].items()} == f.metadata
      assert example["md5"].decode() == lf.md5_hex(f.path)


def test_a_missing_maestro_file_is_reported_in_bad_files(music21_chorales, tmp_path):
  from data_pipeline.bad_files import read_bad_files

  folder, rows = lf.make_maestro(tmp_path / "corpus", music21_chorales[:6])
  gone = folder / rows[0]["midi_filename"]
  gone.unlink()
  _, summary = prepare_mmt("maestro", folder, tmp_path / "data")
  assert (summary.converted, summary.skipped) == (len(rows) - 1, 1)
  [bad] = read_bad_files(summary.bad_files_report)
  assert bad.path == str(gone) and "no such file" in bad.reason
