"""Every part of TFDS that mtx uses beyond its public API, in one place.

The builders subclass `tfds.core.GeneratorBasedBuilder` and override or call some of
its private hooks; `records` writes shards with TFDS's internal serializer, hasher,
shuffler and shard sizes so that its records are the ones TFDS would write. None of
this is promised to stay, so it is listed here (`PRIVATE_HOOKS`, the internal modules
imported below) and checked by `check` against the TFDS installed: on a version not in
TESTED_TFDS the check runs at import and names what moved, instead of a builder failing
hours into a prepare; `tests/data_pipeline/test_tfds_compat.py` runs it always.
"""

from __future__ import annotations

import inspect

import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer, hashing, shuffle  # noqa: F401
from tensorflow_datasets.core.utils import shard_utils  # noqa: F401

# TFDS versions whose private hooks and internal modules mtx was tested with.
TESTED_TFDS = ("4.9.",)

# Private hooks of GeneratorBasedBuilder that CorpusBuilder overrides or calls, with the
# parameters mtx passes or receives (self left out).
PRIVATE_HOOKS: dict[str, tuple[str, ...]] = {
  "_info": (),
  "_split_generators": ("dl_manager",),
  "_generate_examples": (),  # the override takes its own keyword arguments
  "_download_and_prepare": ("dl_manager", "download_config"),
  "_log_download_bytes": (),
  "_log_download_done": (),
  "_process_pipeline_result": ("pipeline_result",),
  "_get_filename_template": ("split_name",),
  "_example_writer": (),
}
# Internal names `records` uses: (module, attribute).
INTERNAL_NAMES = (
  (example_serializer, "ExampleSerializer"),
  (hashing, "Hasher"),
  (shuffle, "Shuffler"),
  (shuffle, "MAX_MEM_BUFFER_SIZE"),
  (shard_utils, "ShardConfig"),
  (shard_utils, "get_shard_boundaries"),
  (hashing.Hasher, "hash_key"),
  (shard_utils.ShardConfig, "get_number_shards"),
  (tfds.core.utils, "classproperty"),
)


def problems() -> list[str]:
  """What the installed TFDS lacks of what mtx uses, one line each (empty: all there)."""
  found = []
  base = tfds.core.GeneratorBasedBuilder
  for name, params in PRIVATE_HOOKS.items():
    hook = getattr(base, name, None)
    if not callable(hook):
      found.append(f"GeneratorBasedBuilder.{name} is gone")
      continue
    names = [p for p in inspect.signature(hook).parameters if p != "self"]
    if params and names[: len(params)] != list(params):
      found.append(f"GeneratorBasedBuilder.{name} takes {names}, not {list(params)}")
  for owner, name in INTERNAL_NAMES:
    if not hasattr(owner, name):
      found.append(f"{owner.__name__}.{name} is gone")
  try:
    flat_example_specs(tfds.features.FeaturesDict({"x": tfds.features.Text()}))["x"]
  except (AttributeError, KeyError) as e:
    found.append(f"ExampleSerializer's flat specs are gone ({e!r})")
  return found


def check(version: str = tfds.__version__) -> None:
  """Raises RuntimeError naming every private part of TFDS that mtx uses and `version`
  no longer has."""
  missing = problems()
  if missing:
    raise RuntimeError(
      f"tensorflow_datasets {version} changed what mtx's builders use "
      f"({'; '.join(missing)}); install a version starting with "
      f"{' or '.join(TESTED_TFDS)}, or adapt data_pipeline/tfds_compat.py"
    )


if not tfds.__version__.startswith(TESTED_TFDS):
  check()


def remember_options(builder: tfds.core.DatasetBuilder, **options) -> None:
  """Records a builder's own `__init__` options where TFDS re-creates a builder from on
  unpickling (Beam's workers do)."""
  builder._original_state.update(options)  # pylint: disable=protected-access


def prepare_with_tfds(
  builder: tfds.core.GeneratorBasedBuilder, dl_manager, download_config
) -> None:
  """TFDS's own generation: `_split_generators` and TFDS's writer (or Beam)."""
  tfds.core.GeneratorBasedBuilder._download_and_prepare(  # pylint: disable=protected-access
    builder, dl_manager, download_config
  )


def filename_template(
  builder: tfds.core.GeneratorBasedBuilder, split: str
) -> tfds.core.ShardedFileTemplate:
  """The shard names TFDS gives split `split` of `builder`."""
  return builder._get_filename_template(split)  # pylint: disable=protected-access


def example_writer(builder: tfds.core.GeneratorBasedBuilder) -> tfds.core.ExampleWriter:
  """The writer of `builder`'s file format."""
  return builder._example_writer()  # pylint: disable=protected-access


def flat_example_specs(features: tfds.features.FeaturesDict) -> dict:
  """The flat {name: TensorInfo} TFDS's serializer walks for `features`."""
  serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
  return serializer._flat_example_specs  # pylint: disable=protected-access
