"""The builders, one thin class per corpus, and the registry `mtx-prepare` reads.

Each class names its layout module; `builder.CorpusBuilder` does the rest.
Layout modules are imported when a builder is made, so listing the names
needs none of them.

    from data_pipeline.builders import get_builder_class
    builder = get_builder_class("jsb_chorales")(config="mmt", data_dir="data")
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow_datasets as tfds

from data_pipeline.builder import CorpusBuilder
from data_pipeline.corpus import CorpusFile
from mtx.datasets import DATASET_NAMES, DATASET_VERSIONS
from mtx.errors import ConfigError


class JsbChorales(CorpusBuilder):
  """The Bach chorales of music21's corpus: needs no manual dir. Its MIDI
  conversion is cached in `--manual_dir` when given, else in
  `<data_dir>/downloads/music21_chorales`."""

  name = "jsb_chorales"
  CORPUS_MODULE = "data_pipeline.jsb_chorales"
  # 1.1.0: each voice keeps its own program (data_pipeline.music21_chorales); a dataset
  # prepared from the piano-only conversion (1.0.0) is left where it is, never reused.
  # 1.2.0: the codecs' changes of CorpusBuilder 1.1.0.
  VERSION = tfds.core.Version(DATASET_VERSIONS[name])
  RELEASE_NOTES = {
    "1.0.0": "First release: every part on program 0.",
    "1.1.0": "Each voice on its own program (soprano, alto, tenor and baritone "
    "saxophone; instrumental parts by name).",
    "1.2.0": CorpusBuilder.RELEASE_NOTES["1.1.0"],
  }

  def source_dir(self, manual_dir: str | os.PathLike | None) -> Path:
    if manual_dir is None:
      return Path(self.data_dir_root).expanduser().absolute() / "downloads" / "music21_chorales"
    return super().source_dir(manual_dir)

  def _list_files(self, source: Path) -> list[CorpusFile]:
    return self.corpus().list_files(
      source, limit=self._limit, num_workers=self._num_workers, **self._corpus_options
    )


class Maestro(CorpusBuilder):
  """MAESTRO v3 as released: the csv/json metadata and the year folders."""

  name = "maestro"
  CORPUS_MODULE = "data_pipeline.maestro"
  VERSION = tfds.core.Version(DATASET_VERSIONS[name])


class Lmd(CorpusBuilder):
  """The Lakh MIDI Dataset: lmd_full (md5-sharded) or lmd_matched."""

  name = "lmd"
  CORPUS_MODULE = "data_pipeline.lmd"
  VERSION = tfds.core.Version(DATASET_VERSIONS[name])


class Sod(CorpusBuilder):
  """The Symbolic Orchestral Database as distributed."""

  name = "sod"
  CORPUS_MODULE = "data_pipeline.sod"
  VERSION = tfds.core.Version(DATASET_VERSIONS[name])


class Symphonynet(CorpusBuilder):
  """The SymphonyNet dataset."""

  name = "symphonynet"
  CORPUS_MODULE = "data_pipeline.symphonynet"
  VERSION = tfds.core.Version(DATASET_VERSIONS[name])


class MidiFolder(CorpusBuilder):
  """Any folder of MIDI files (.mid, .midi, .kar, .rmi); `corpus_options`: `validation`,
  `test` ratios."""

  name = "midi_folder"
  CORPUS_MODULE = "data_pipeline.midi_folder"
  VERSION = tfds.core.Version(DATASET_VERSIONS[name])


BUILDERS: dict[str, type[CorpusBuilder]] = {
  cls.name: cls for cls in (JsbChorales, Maestro, Lmd, Sod, Symphonynet, MidiFolder)
}
assert tuple(BUILDERS) == DATASET_NAMES, "mtx.datasets names every builder, in this order"


def get_builder_class(name: str) -> type[CorpusBuilder]:
  """The builder class of dataset `name`."""
  if name not in BUILDERS:
    raise ConfigError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)}")
  return BUILDERS[name]
