"""report.json and report.html: deterministic, atomic, self-contained, escaped; and the
page as a real browser (headless Chromium) shows it."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import subprocess
import wave
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from mtx.evaluate import plots, report

CHROMIUM_MISSING = (
  "Chromium is not installed: apt-get install chromium (scripts/test.sh installs it where it can)"
)
EVIL = "<script>alert('x')</script>"


# ---- JSON ----


def _sample_report() -> dict:
  return {
    "run": {"workdir": "/runs/jsb_tiny", "step": 1200, "split": "validation", "seed": 0},
    "likelihood": {
      "nll_per_row": 2.5,
      "perplexity": math.e**2.5,
      "per_field": {
        "pitch": {"nll": 1.25, "accuracy": 0.5, "perplexity": 3.49},
        "beat": {"nll": 0.75, "accuracy": 0.75, "perplexity": 2.12},
        EVIL: {"nll": float("nan"), "accuracy": 0.0, "perplexity": float("inf")},
      },
    },
    "music_metrics": {  # the shape mtx.evaluate.evaluator writes
      "resolution": 12,
      "samples": {
        "pitch_class_entropy": {"mean": 2.9, "std": 0.2, "count": 8, "nan": 0},
        "scale_consistency": {"mean": 0.93, "std": 0.02, "count": 7, "nan": 1},
        "groove_consistency": {"mean": 0.9, "std": 0.05, "count": 8, "nan": 0},
      },
      "ground_truth": {
        "pitch_class_entropy": {"mean": 3.1, "std": 0.1, "count": 8, "nan": 0},
        "scale_consistency": {"mean": 0.97, "std": 0.01, "count": 8, "nan": 0},
        "groove_consistency": {"mean": 0.92, "std": 0.03, "count": 8, "nan": 0},
      },
      "distances": {
        name: {
          "overlap_area": oa,
          "kl_divergence": 0.1,
          "intra_truth_mean": 0.5,
          "inter_mean": 0.6,
          "n_sample": 8,
          "reason": None,
        }
        for name, oa in (
          ("pitch_class_entropy", 0.61),
          ("scale_consistency", 0.44),
          ("groove_consistency", 0.7),
        )
      },
      "files": {
        "samples": [
          {
            "name": f"sample_{i}",
            "strict": True,
            "metrics": {"pitch_class_entropy": 2.9, "groove": 0.9},
          }
          for i in range(3)
        ]
      },
    },
    "embeddings": {"pitch": {"octave_score": 0.31, "similarity": np.eye(3)}},
    "curves": {"available": False},
    "definitions": {
      "perplexity": "exp of the mean NLL per row: the effective choices",
      "overlap_area": "overlap of the two distributions' densities (1 = same)",
      "octave_score": "mean cosine similarity of pitches 12 apart",
    },
  }


def test_json_is_the_same_bytes_for_the_same_report_in_any_key_order(tmp_path):
  first = report.write_json(_sample_report(), tmp_path / "a.json")
  reordered = dict(reversed(list(_sample_report().items())))
  second = report.write_json(reordered, tmp_path / "b.json")
  assert first.read_bytes() == second.read_bytes()
  assert first.read_bytes().endswith(b"}\n")


def test_json_writes_nan_as_null_and_infinity_as_a_string(tmp_path):
  path = report.write_json(
    {
      "a": float("nan"),
      "b": np.float32("inf"),
      "c": -math.inf,
      "d": np.arange(3),
      "e": (0.1 + 0.2, np.int64(7)),
      3: True,
    },
    tmp_path / "report.json",
  )
  text = path.read_text()
  assert "NaN" not in text and "Infinity" not in text
  assert json.loads(text) == {
    "a": None,
    "b": "inf",
    "c": "-inf",
    "d": [0, 1, 2],
    "e": [0.3, 7],
    "3": True,
  }


def test_json_keeps_the_old_report_when_a_write_is_interrupted(tmp_path, monkeypatch):
  path = report.write_json({"step": 1}, tmp_path / "report.json")
  old = path.read_bytes()

  with pytest.raises(TypeError, match=r"report\.likelihood\.bad is a object"):
    report.write_json({"likelihood": {"bad": object()}}, path)
  assert path.read_bytes() == old

  def crash(*args):
    raise OSError("disk full")

  monkeypatch.setattr(os, "fsync", crash)
  with pytest.raises(OSError, match="disk full"):
    report.write_json({"step": 2}, path)
  assert path.read_bytes() == old
  assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_json_with_a_bad_value_leaves_no_file(tmp_path):
  with pytest.raises(TypeError):
    report.write_json({"x": {1, 2}}, tmp_path / "report.json")
  assert list(tmp_path.iterdir()) == []


# ---- HTML structure ----


class _Page(HTMLParser):
  """What the tests look at: doctype, attributes of every element, table headers, the
  title and all text."""

  def __init__(self, text: str):
    super().__init__(convert_charrefs=True)
    self.doctype = None
    self.elements: list[tuple[str, dict]] = []
    self.title = ""
    self.text: list[str] = []
    self.headers: list[list[str]] = []  # the column headers of each <thead>
    self._stack: list[str] = []
    self.feed(text)
    self.close()

  def handle_decl(self, decl):
    self.doctype = decl

  def handle_starttag(self, tag, attrs):
    self.elements.append((tag, dict(attrs)))
    if tag == "thead":
      self.headers.append([])
    self._stack.append(tag)

  def handle_endtag(self, tag):
    while self._stack and self._stack.pop() != tag:
      pass

  def handle_data(self, data):
    if "title" in self._stack:
      self.title += data
    if "thead" in self._stack and "th" in self._stack:
      self.headers[-1].append(data)
    self.text.append(data)

  def all(self, tag: str) -> list[dict]:
    return [attrs for name, attrs in self.elements if name == tag]


def _wav(path: Path, seconds: float, rate: int = 8000) -> Path:
  t = np.arange(int(seconds * rate)) / rate
  samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
  with wave.open(str(path), "wb") as writer:
    writer.setnchannels(1)
    writer.setsampwidth(2)
    writer.setframerate(rate)
    writer.writeframes(samples.tobytes())
  return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
  """Two figures, a piano roll and three WAVs (short, long, too big), made once."""
  folder = tmp_path_factory.mktemp("assets")
  from mtx.representation.notetable import from_notes

  rows = [[i * 240, i * 240 + 200, 60 + (i * 7) % 12, 90, 0, 0, 0] for i in range(16)]
  return {
    "attention": plots.plot_category_attention(
      np.array([[0.7, 0.3], [0.4, 0.6]]), ["note", "start"], folder / "attention.png"
    ),
    "similarity": plots.plot_similarity(np.eye(12), folder / "similarity.png"),
    "roll": plots.plot_piano_roll(
      from_notes(np.array(rows), ticks_per_beat=480), folder / "roll.png", title="sample 0"
    ),
    "short": _wav(folder / "short.wav", 0.5),
    "long": _wav(folder / "long.wav", 3.0),
    "big": _wav(folder / "big.wav", 2.0, rate=44100),
  }


def _write_page(out_dir, assets, **options) -> Path:
  return report.write_html(
    _sample_report(),
    out_dir,
    images=[
      ("attention", "attention between <categories>", assets["attention"]),
      ("embeddings", "pitch embedding similarity", assets["similarity"]),
    ],
    piano_rolls=[
      ("samples", "sample 0", assets["roll"]),
      ("ground truth", "song 0", assets["roll"]),
    ],
    audio=[
      ("sample 0", assets["short"]),
      ("sample 1", assets["long"]),
      ("sample 2", assets["big"]),
    ],
    max_audio_seconds=1.0,
    max_audio_bytes=40_000,
    **options,
  )


def test_html_is_a_valid_self_contained_page(tmp_path, assets):
  path = _write_page(tmp_path, assets)
  assert path == tmp_path / "report.html"
  text = path.read_text(encoding="utf-8")
  page = _Page(text)
  assert text.startswith("<!DOCTYPE html>") and page.doctype.lower() == "doctype html"
  assert page.all("html") == [{"lang": "en"}]
  assert {"charset": "utf-8"} in page.all("meta")
  assert page.title == "mtx-eval report: jsb_tiny at step 1,200"
  assert not page.all("script") and not page.all("link")
  for tag, attrs in page.elements:  # nothing to fetch: data: URIs and in-page anchors
    for name in ("src", "href"):
      if name in attrs:
        assert attrs[name].startswith(("data:", "#")), (tag, attrs[name][:40])
  ids = [attrs["id"] for _, attrs in page.elements if "id" in attrs]
  assert len(ids) == len(set(ids))
  assert {a["href"][1:] for a in page.all("a")} <= set(ids)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_html_embeds_each_image_as_its_png_bytes_with_alt_text(tmp_path, assets):
  page = _Page(_write_page(tmp_path, assets).read_text(encoding="utf-8"))
  images = page.all("img")
  expected = [assets["attention"], assets["similarity"], assets["roll"], assets["roll"]]
  assert len(images) == len(expected)
  for attrs, png in zip(images, expected):
    prefix = "data:image/png;base64,"
    assert attrs["src"].startswith(prefix)
    assert base64.b64decode(attrs["src"][len(prefix) :]) == png.read_bytes()
    assert attrs["alt"]
  assert images[0]["alt"] == "attention between <categories>"


def test_html_embeds_audio_cut_to_the_limit_and_notes_what_it_left_out(tmp_path, assets):
  text = _write_page(tmp_path, assets).read_text(encoding="utf-8")
  page = _Page(text)
  sources = [a["src"] for a in page.all("audio")]
  # sample 2: its first second as a 22.05 kHz 16-bit preview is 44 kB, over 40 kB
  assert len(sources) == 2
  prefix = "data:audio/wav;base64,"
  clips = [base64.b64decode(s[len(prefix) :]) for s in sources]
  assert all(s.startswith(prefix) for s in sources)
  assert clips[0] == assets["short"].read_bytes()
  with wave.open(io.BytesIO(clips[1])) as clip:
    assert clip.getnframes() == 8000  # the first second of three
  assert "the first 1 s of 3 s" in "".join(page.text)
  assert "“sample 2” is not embedded: 43 KiB is over the 39 KiB limit" in "".join(page.text)


def test_embedded_audio_is_a_mono_preview_at_half_the_cd_rate(tmp_path):
  """A stereo 44.1 kHz render (what FluidSynth writes) is embedded as mono at 22.05 kHz:
  the channels' mean, neighbouring frames averaged, so the page stays a few MiB."""
  rate, seconds = 44100, 0.5
  t = np.arange(int(rate * seconds)) / rate
  left = np.round(8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
  right = np.round(4000 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
  path = tmp_path / "stereo.wav"
  with wave.open(str(path), "wb") as writer:
    writer.setnchannels(2)
    writer.setsampwidth(2)
    writer.setframerate(rate)
    writer.writeframes(np.stack([left, right], axis=1).tobytes())
  data, note = report.wav_clip(path, None)
  assert note == ""
  with wave.open(io.BytesIO(data)) as clip:
    assert (clip.getnchannels(), clip.getframerate(), clip.getnframes()) == (1, 22050, 11025)
    mono = np.frombuffer(clip.readframes(clip.getnframes()), "<i2").astype(float)
  expected = ((left.astype(float) + right) / 2).reshape(-1, 2).mean(axis=1)
  assert np.abs(mono - expected).max() <= 0.5


def test_html_tables_have_the_expected_headers(tmp_path, assets):
  page = _Page(_write_page(tmp_path, assets).read_text(encoding="utf-8"))
  headers = [[h.strip() for h in hs if h.strip()] for hs in page.headers]
  assert ["nll", "accuracy", "perplexity"] in headers  # likelihood per field
  # music metrics: samples beside ground truth and the headline distances, then all of
  # the distances, then the files with their nested metrics as dotted columns
  assert ["samples", "ground truth", "overlap area", "kl divergence"] in headers
  assert [
    "overlap area",
    "kl divergence",
    "intra truth mean",
    "inter mean",
    "n sample",
    "reason",
  ] in headers
  assert ["name", "strict", "metrics.pitch class entropy", "metrics.groove"] in headers
  text = " ".join(page.text)
  assert "2.9 ± 0.2" in text and "3.1 ± 0.1" in text and "0.93 ± 0.02 (1 NaN)" in text
  assert "array 3 × 3" in text  # a matrix in the report is summarized, not dumped
  assert "No training curves" in text
  section_ids = [a["id"] for a in page.all("section")]
  assert section_ids == [
    "likelihood",
    "music-metrics",
    "attention",
    "embeddings",
    "curves",
    "piano-rolls",
    "audio",
    "definitions",
  ]


def test_html_shows_definitions_as_tooltips_and_a_glossary(tmp_path, assets):
  page = _Page(_write_page(tmp_path, assets).read_text(encoding="utf-8"))
  tooltips = {a["title"] for a in page.all("span") if a.get("class") == "term"}
  assert "overlap of the two distributions' densities (1 = same)" in tooltips
  assert [a["id"] for a in page.all("dt")] == [
    "def-octave-score",
    "def-overlap-area",
    "def-perplexity",
  ]


def test_html_escapes_every_text(tmp_path, assets):
  text = _write_page(tmp_path, assets).read_text(encoding="utf-8")
  assert "<script" not in text.lower()
  assert "&lt;script&gt;" in text
  page = _Page(text)
  assert EVIL in page.text


def test_html_is_deterministic_and_skips_what_is_missing(tmp_path, assets):
  minimal = {"run": {"workdir": "w"}, "extra_analysis": {"score": 1}}
  first = report.render_html(minimal, images=[("attention", "gone", tmp_path / "no.png")])
  assert first == report.render_html(minimal, images=[("attention", "gone", tmp_path / "no.png")])
  page = _Page(first)
  assert [a["id"] for a in page.all("section")] == ["attention", "curves", "extra-analysis"]
  assert not page.all("img")
  assert "Figure “gone” is missing" in "".join(page.text)


def test_html_renders_an_unknown_schema_generically(tmp_path, assets):
  odd = {
    "step": 7,
    "per_song": [{"song": f"s{i}", "notes": i * 10} for i in range(250)],
    "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1.5}}}}}}, "values": list(range(40))},
    "audio": {"rendered": 2},
    "sets": {"a": {f"m{i}": i for i in range(6)}, "b": {f"m{i}": -i for i in range(6)}},
    "curves": {
      "available": True,  # mtx.evaluate.evaluator's summary of the scalars
      "train/loss": {"last_step": 9, "last": 1.5, "min": 1.25},
      "eval/loss": {"last_step": 8, "last": 1.75, "min": 1.5},
    },
    "definitions": {
      "likelihood": {"nll": "mean negative log-likelihood per row"},
      "sets.m1": "the second metric",
    },
  }
  text = report.render_html(
    odd, images=[("Extra Plots", "x", assets["attention"])], audio=[("clip", assets["short"])]
  )
  page = _Page(text)
  assert page.title == "mtx-eval report at step 7"
  ids = [a["id"] for _, a in page.elements if "id" in a]
  assert len(ids) == len(set(ids))
  assert [a["id"] for a in page.all("section")] == [
    "curves",
    "per-song",
    "deep",
    "audio",
    "sets",
    "extra-plots",
    "audio-2",
    "definitions",
  ]
  joined = "".join(page.text)
  assert "The first 200 of 250 rows" in joined
  assert "40 values: min 0, mean 19.5, max 39" in joined
  assert "No training curves" in joined  # a summary, but no figure
  headers = [[h.strip() for h in hs if h.strip()] for hs in page.headers]
  assert ["last step", "last", "min"] in headers  # dicts with the same keys: one table
  assert ["a", "b"] in headers  # two sets of six metrics: the metrics run down the page
  assert [a["id"] for a in page.all("dt")] == ["def-likelihood-nll", "def-sets-m1"]
  tooltips = {a["title"] for a in page.all("span") if a.get("class") == "term"}
  assert "the second metric" in tooltips  # a dotted definition names its last part
  assert len(page.all("img")) == 1 and len(page.all("audio")) == 1


# ---- a real browser ----


def _chromium() -> str | None:
  for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
    if candidate and os.access(candidate, os.X_OK):
      return candidate
  return None


def chromium_command(binary: str, page: Path, work: Path) -> list[str]:
  """One headless load of the page: a screenshot, the DOM after load, the console on
  stderr, and which file:// URLs (FileURLLoader) and network URLs (the net log) the
  page asked for."""
  return [
    binary,
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--user-data-dir={work / 'profile'}",
    "--hide-scrollbars",
    "--window-size=1280,2000",
    f"--screenshot={work / 'screenshot.png'}",
    "--dump-dom",
    f"--log-net-log={work / 'net.json'}",
    "--enable-logging=stderr",
    "--v=0",
    "--vmodule=file_url_loader_factory=1",
    page.resolve().as_uri(),
  ]


def _load(page: Path, work: Path) -> dict:
  """Loads the page in Chromium; returns the DOM, the screenshot, the console lines
  and the URLs other than the page's own that the page requested."""
  work.mkdir(parents=True, exist_ok=True)
  done = subprocess.run(
    chromium_command(_chromium(), page, work),
    capture_output=True,
    encoding="utf-8",
    errors="replace",
    timeout=90,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
  own = page.resolve().as_uri()
  files = [
    line.rsplit("FileURLLoader::Start: ", 1)[1].strip()
    for line in done.stderr.splitlines()
    if "FileURLLoader::Start: " in line
  ]
  log = json.loads((work / "net.json").read_text())
  start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
  network = [
    event["params"]["url"]
    for event in log["events"]
    if event["type"] == start_job
    and "file://" in event.get("params", {}).get("network_isolation_key", "")
  ]
  return {
    "dom": done.stdout,
    "screenshot": work / "screenshot.png",
    "console": console,
    "requests": [url for url in files if url != own] + network,
  }


@pytest.mark.skipif(_chromium() is None, reason=CHROMIUM_MISSING)
def test_chromium_renders_the_page_with_its_images_and_no_errors(tmp_path, assets):
  import matplotlib.image

  page = _write_page(tmp_path / "out", assets)
  loaded = _load(page, tmp_path / "chromium")
  assert loaded["console"] == []
  assert loaded["requests"] == []
  shot = matplotlib.image.imread(loaded["screenshot"])
  assert shot.shape[:2] == (2000, 1280)
  pixels = (shot[..., :3] * 255).round().astype(np.int64).reshape(-1, 3)
  colors = np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2])
  assert colors.size > 100  # not a blank page
  viridis_dark = np.array([68, 1, 84])  # in the attention heatmap, nowhere in the CSS
  assert (np.abs(pixels - viridis_dark).sum(axis=1) < 30).sum() > 100
  dom = _Page(loaded["dom"])
  assert len(dom.all("img")) == 4
  assert all(a["src"].startswith("data:image/png;base64,") for a in dom.all("img"))
  assert len(dom.all("audio")) == 2


@pytest.mark.skipif(_chromium() is None, reason=CHROMIUM_MISSING)
def test_chromium_check_sees_console_errors_and_outside_requests(tmp_path):
  page = tmp_path / "bad.html"
  page.write_text(
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>b'
    '</title></head><body><img src="missing.png" alt="m">'
    '<img src="http://example.invalid/x.png" alt="x">'
    '<script>console.error("boom")</script></body></html>'
  )
  loaded = _load(page, tmp_path / "chromium")
  assert any('"boom"' in line for line in loaded["console"])
  assert sorted(loaded["requests"]) == sorted(
    [(tmp_path / "missing.png").as_uri(), "http://example.invalid/x.png"]
  )
