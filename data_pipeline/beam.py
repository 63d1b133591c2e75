"""The Apache Beam path of a prepare (`mtx-prepare --beam_runner`): the same
`convert_file` on the runner's workers, bad files written as tsv lines beside the
records and merged by the builder at the end."""

from __future__ import annotations

import tensorflow_datasets as tfds
from etils import epath

from data_pipeline.bad_files import bad_file_of_line, tsv_line
from data_pipeline.convert import BadFile, CodecSpec, Converted, convert_file
from data_pipeline.corpus import CorpusFile
from mtx.errors import ConfigError

BAD_PREFIX = "bad_files-"


def beam_examples(
  split: str, first: Converted, rest: list[CorpusFile], spec: CodecSpec, report_prefix: str
):
  """The split's examples as a Beam PTransform: the same `convert_file` on the
  runner's workers; bad files are written as tsv lines next to the records."""
  beam = tfds.core.lazy_imports.apache_beam

  @beam.ptransform_fn
  def convert(pipeline):
    results = (
      pipeline
      | f"{split}_files" >> beam.Create(rest)
      | f"{split}_spread" >> beam.Reshuffle()
      | f"{split}_convert" >> beam.FlatMap(_beam_convert, spec).with_outputs("bad", main="good")
    )
    _ = results.bad | f"{split}_report" >> beam.io.WriteToText(
      report_prefix, file_name_suffix=".tsv"
    )
    probed = pipeline | f"{split}_first" >> beam.Create([(first.key, first.example)])
    return (results.good, probed) | f"{split}_all" >> beam.Flatten()

  return convert()  # pylint: disable=no-value-for-parameter


def _beam_convert(file: CorpusFile, spec: CodecSpec):
  beam = tfds.core.lazy_imports.apache_beam
  result = convert_file(file, spec)
  if isinstance(result, BadFile):
    yield beam.pvalue.TaggedOutput("bad", tsv_line(result))
    return
  if result.truncated:
    beam.metrics.Metrics.counter("mtx", "truncated").inc()
  yield result.key, result.example


def truncated_count(pipeline_result) -> int:
  """How many files the workers truncated (their "mtx/truncated" counter)."""
  beam = tfds.core.lazy_imports.apache_beam
  query = pipeline_result.metrics().query(
    beam.metrics.MetricsFilter().with_namespace("mtx").with_name("truncated")
  )
  return sum(c.committed or 0 for c in query["counters"])


def collect_bad_files(data_dir: epath.PathLike) -> list[BadFile]:
  """Merges the bad-file lines the Beam workers wrote, and removes their files."""
  bad = []
  for part in sorted(epath.Path(data_dir).glob(f"{BAD_PREFIX}*")):
    for line in part.read_text().splitlines():
      if line:
        bad.append(bad_file_of_line(line))
    part.unlink()
  return bad


def beam_pipeline_options(runner: str | None, options: list[str]):
  """Beam `PipelineOptions` from `key=value` items (`direct_num_workers=2`)."""
  try:
    from apache_beam.options.pipeline_options import PipelineOptions
  except ImportError:
    raise ConfigError(
      "--beam_runner/--beam_options need Apache Beam: pip install -e '.[beam]'"
    ) from None
  argv = [f"--{item.lstrip('-')}" for item in options if item]
  if runner:
    argv.append(f"--runner={runner}")
  return PipelineOptions(argv)
