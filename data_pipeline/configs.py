"""The builder configs: one per representation and way of preparing its songs.

`CONFIG_OPTIONS` fixes each representation's codec options; a config's name
(`mtx.datasets.config_name`: "mmt", "mmt_shift_min50") says how the songs were
prepared, so a dataset prepared another way lies in its own folder and is never
reused. The plain configs keep leading silence and every song with a note (what
mtx always did, and what the shipped configs train on).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import tensorflow_datasets as tfds

from data_pipeline.convert import CodecSpec
from mtx.datasets import config_name, parse_config_name
from mtx.representation import CODEC_NAMES

# The codec options of each config. mmt truncates notes past max_beat, as the
# reference's data does, so a long piece is kept (its start) and counted.
CONFIG_OPTIONS: dict[str, tuple[tuple[str, Any], ...]] = {
  "mmt": (("overflow", "truncate"),),
  "performance": (),
  "remi": (),
  "mmm": (),
}


@dataclasses.dataclass(eq=False)
class RepresentationConfig(tfds.core.BuilderConfig):
  """A builder config: a representation (its codec options fixed by CONFIG_OPTIONS)
  and how songs are prepared for it; named by `config_name`."""

  representation: str = ""
  codec_options: tuple[tuple[str, Any], ...] = ()
  shift_to_first_note: bool = False
  min_notes: int = 0

  @property
  def spec(self) -> CodecSpec:
    return CodecSpec(
      self.representation or self.name,
      self.codec_options,
      shift_to_first_note=self.shift_to_first_note,
      min_notes=self.min_notes,
    )

  @property
  def preparation(self) -> dict[str, Any]:
    """What `metadata.json` records of how the songs were prepared."""
    return {"shift_to_first_note": self.shift_to_first_note, "min_notes": self.min_notes}

  @property
  def preparation_words(self) -> str:
    """How the songs were prepared, in words (the dataset's description)."""
    ways = (["each song's first note moved into beat 0"] if self.shift_to_first_note else []) + (
      [f"songs of fewer than {self.min_notes} notes left out"] if self.min_notes else []
    )
    return ", ".join(ways) or "leading silence kept, every song with a note kept"


def representation_config(name: str) -> RepresentationConfig | None:
  """The config `name` stands for (`config_name`'s inverse), or None."""
  parts = parse_config_name(name)
  if parts is None:
    return None
  representation, shift, min_notes = parts
  options = CONFIG_OPTIONS[representation]
  config = RepresentationConfig(
    name=name,
    representation=representation,
    codec_options=options,
    shift_to_first_note=shift,
    min_notes=min_notes,
  )
  config.description = (
    f"{representation} tokens, codec options {dict(options) or 'default'}; "
    f"{config.preparation_words}"
  )
  return config


@functools.cache
def variant_config(name: str) -> RepresentationConfig | None:
  """One object per variant name: TFDS compares configs by identity."""
  return representation_config(name)


def representation_configs() -> list[RepresentationConfig]:
  """The registered configs: each representation prepared mtx's way."""
  assert set(CONFIG_OPTIONS) == set(CODEC_NAMES), "a config per representation"
  return [representation_config(config_name(name)) for name in CODEC_NAMES]


def codec_settings(spec: CodecSpec) -> dict[str, Any]:
  """Every scalar setting of the codec a config builds (its options with the
  codec's defaults filled in): what `metadata.json` records."""
  codec = spec.codec()
  return {
    k: v
    for k, v in sorted(vars(codec).items())
    if isinstance(v, (bool, int, float, str)) and not k.startswith("_")
  }
