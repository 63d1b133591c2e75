"""MIDI <-> token representations.

from mtx.representation import get_codec
codec = get_codec("mmt")      # or "performance", "remi", "mmm"
tokens = codec.encode(path)   # int32 (n, codec.n_fields)
midi = codec.decode(tokens)   # miditoolkit.MidiFile
codec.fields                  # the field table: names, sizes, meanings
"""

from __future__ import annotations

import importlib

from mtx.errors import ConfigError
from mtx.representation.codec import Codec, DecodeReport
from mtx.representation.fields import Field, FieldTable

# name -> (module, class); modules are imported on first use.
_CODECS = {
  "mmt": ("mtx.representation.mmt", "MMTCodec"),
  "performance": ("mtx.representation.performance", "PerformanceCodec"),
  "remi": ("mtx.representation.remi", "RemiCodec"),
  "mmm": ("mtx.representation.mmm", "MMMCodec"),
}

CODEC_NAMES = tuple(_CODECS)


def get_codec(name: str, **options) -> Codec:
  """The codec called `name`, built with its keyword `options`."""
  if name not in _CODECS:
    raise ConfigError(f"unknown representation '{name}'; choose one of {', '.join(CODEC_NAMES)}")
  module, cls = _CODECS[name]
  codec_cls = getattr(importlib.import_module(module), cls)
  try:
    return codec_cls(**options)
  except TypeError as e:
    raise ConfigError(f"bad option for representation '{name}': {e}") from None


__all__ = ["Codec", "CODEC_NAMES", "DecodeReport", "Field", "FieldTable", "get_codec"]
