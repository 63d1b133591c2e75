"""`mtx-tokenize`: MIDI files -> tokens -> MIDI, with every representation asked for.

    mtx-tokenize --input_dir=DIR --output_dir=OUT [--representations=mmt,remi]

For each MIDI file under `input_dir` (recursive) and each representation it
writes `OUT/<representation>/<name>.npy` (the int32 tokens) and
`OUT/<representation>/<name>.mid` (the tokens decoded back to MIDI), then prints
a summary per representation. Bad files are skipped and listed in
`OUT/bad_files.tsv` (path, representation, reason; a tab, newline, backslash or
byte that is not UTF-8 escaped as `data_pipeline.corpus.path_text` says, so each
listed path can be found again); they never stop the run. A file name that is
not UTF-8 is kept as it is in the outputs' names.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np
from absl import flags

from data_pipeline.corpus import find_midi_files, path_text
from mtx.cli.app import run as run_app
from mtx.cli.paths import check_output_dir
from mtx.errors import ConfigError, MtxError
from mtx.representation import CODEC_NAMES, get_codec

_INPUT_DIR = flags.DEFINE_string(
  "input_dir", None, "Folder of MIDI files (.mid, .midi, .kar, .rmi; recursive)."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where tokens and decoded MIDI go.")
_REPRESENTATIONS = flags.DEFINE_list(
  "representations", list(CODEC_NAMES), f"Any of {', '.join(CODEC_NAMES)}."
)


def main(argv: list[str]) -> None:
  del argv
  if not _INPUT_DIR.value or not _OUTPUT_DIR.value:
    raise ConfigError("both --input_dir and --output_dir are required.")
  input_dir, output_dir = Path(_INPUT_DIR.value), Path(_OUTPUT_DIR.value)
  codecs = {name: get_codec(name) for name in _REPRESENTATIONS.value}
  files = find_midi_files(input_dir, "input_dir")
  check_output_dir(output_dir, "output_dir")
  bad_rows = []
  summary = {}
  for name, codec in codecs.items():
    out = output_dir / name
    out.mkdir(parents=True, exist_ok=True)
    stats = collections.Counter()
    start = time.perf_counter()
    for path in files:
      relative = path.relative_to(input_dir)
      try:
        tokens = codec.encode(path)
      except MtxError as e:
        bad_rows.append((str(path), name, str(e)))
        stats["bad"] += 1
        continue
      target = out / relative.parent / path.stem  # "bwv1.6.mid" -> "bwv1.6"
      target.parent.mkdir(parents=True, exist_ok=True)
      np.save(f"{target}.npy", tokens)
      midi, report = codec.decode(tokens, return_report=True)
      midi.dump(f"{target}.mid")
      stats["files"] += 1
      stats["tokens"] += tokens.shape[0]
      stats["dropped"] += report.dropped
    summary[name] = (stats, time.perf_counter() - start)
  output_dir.mkdir(parents=True, exist_ok=True)
  with open(output_dir / "bad_files.tsv", "w", encoding="utf-8") as report_file:
    report_file.write("path\trepresentation\treason\n")
    for row in bad_rows:
      report_file.write("\t".join(path_text(part) for part in row) + "\n")
  print(f"{len(files)} MIDI files from {input_dir}")
  print("| representation | converted | skipped | tokens/file | rows dropped on decode | seconds |")
  print("|---|---|---|---|---|---|")
  for name, (stats, seconds) in summary.items():
    per_file = stats["tokens"] / max(stats["files"], 1)
    print(
      f"| {name} | {stats['files']} | {stats['bad']} | {per_file:.0f} | {stats['dropped']} "
      f"| {seconds:.1f} |"
    )
  if bad_rows:
    print(f"{len(bad_rows)} skipped: see {output_dir / 'bad_files.tsv'}")
  print(f"tokens (.npy) and decoded MIDI (.mid) in {output_dir}")
  if not any(stats["files"] for stats, _ in summary.values()):
    raise ConfigError(
      f"no file under {input_dir} could be converted; see {output_dir / 'bad_files.tsv'}"
    )


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
