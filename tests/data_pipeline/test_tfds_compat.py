"""The private parts of TFDS that the builders and `records` use are all still there,
with the parameters mtx passes: a TFDS upgrade that moves one fails here, by name, not
hours into a prepare."""

from __future__ import annotations

import pytest
import tensorflow_datasets as tfds

from data_pipeline import tfds_compat
from data_pipeline.builder import CorpusBuilder


def test_the_installed_tfds_has_every_private_part_mtx_uses():
  assert tfds_compat.problems() == []
  tfds_compat.check()


def test_every_private_hook_the_builder_overrides_is_listed():
  """A hook overridden without being listed would escape the check above."""
  overridden = {
    name
    for name, value in vars(CorpusBuilder).items()
    if name.startswith("_")
    and not name.startswith("__")
    and callable(value)
    and hasattr(tfds.core.GeneratorBasedBuilder, name)
  }
  assert overridden <= set(tfds_compat.PRIVATE_HOOKS)


def test_a_changed_tfds_is_refused_naming_what_moved(monkeypatch):
  monkeypatch.delattr(tfds.core.GeneratorBasedBuilder, "_example_writer")
  monkeypatch.setitem(tfds_compat.PRIVATE_HOOKS, "_get_filename_template", ("split",))
  with pytest.raises(RuntimeError) as error:
    tfds_compat.check("9.9.9")
  message = str(error.value)
  assert "tensorflow_datasets 9.9.9" in message
  assert "GeneratorBasedBuilder._example_writer is gone" in message
  assert "_get_filename_template takes ['split_name'" in message
