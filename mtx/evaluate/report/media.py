"""Figures and audio inlined in the page as data: URIs, so it opens with nothing to fetch;
a missing or unreadable file is a note on the page, not an error."""

from __future__ import annotations

import base64
import io
import struct
import wave
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mtx.evaluate.report.tables import Page, escape

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
  width, height = struct.unpack(">II", data[16:24])
  return width, height


def add_figure(page: Page, caption: str, path) -> None:
  path = Path(path)
  try:
    data = path.read_bytes()
  except OSError as error:
    page.add(
      f'<p class="note">Figure “{escape(caption)}” is missing: {escape(path)} '
      f"({escape(error.strerror or error)}).</p>"
    )
    return
  if not data.startswith(PNG_SIGNATURE) or len(data) < 24:
    page.add(f'<p class="note">Figure “{escape(caption)}” is not a PNG: {escape(path)}.</p>')
    return
  width, height = _png_size(data)
  src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
  page.add(
    f'<figure><img src="{src}" alt="{escape(caption)}" width="{width}" '
    f'height="{height}"><figcaption>{escape(caption)}</figcaption></figure>'
  )


PREVIEW_RATE = 22050  # embedded audio: mono 16-bit at most this rate, a sixth of CD size


def wav_clip(path: Path, max_seconds: float | None) -> tuple[bytes, str]:
  """The WAV as embedded: its first `max_seconds`, and, when it is 16-bit, as a mono
  preview at no more than PREVIEW_RATE (channels averaged, the rate halved by averaging
  neighbouring frames) so a page of several clips stays a few MiB; and a note saying
  what was cut. A WAV the `wave` module cannot read (float samples) is kept whole."""
  data = path.read_bytes()
  try:
    with wave.open(io.BytesIO(data)) as reader:
      params = reader.getparams()
      duration = params.nframes / params.framerate
      count = params.nframes
      if max_seconds is not None and duration > max_seconds:
        count = int(max_seconds * params.framerate)
      frames = reader.readframes(count)
  except (wave.Error, EOFError, ZeroDivisionError):
    return data, ""
  note = f"the first {max_seconds:g} s of {duration:.0f} s" if count < params.nframes else ""
  rate, channels, width = params.framerate, params.nchannels, params.sampwidth
  if width == 2:
    samples = np.frombuffer(frames, "<i2").reshape(-1, channels).astype(np.float32)
    samples = samples.mean(axis=1)
    while rate > PREVIEW_RATE and rate % 2 == 0:
      samples = samples[: len(samples) // 2 * 2].reshape(-1, 2).mean(axis=1)
      rate //= 2
    frames = np.round(samples).astype("<i2").tobytes()
    channels = 1
  out = io.BytesIO()
  with wave.open(out, "wb") as writer:
    writer.setnchannels(channels)
    writer.setsampwidth(width)
    writer.setframerate(rate)
    writer.writeframes(frames)
  return out.getvalue(), note


def _size(num_bytes: int) -> str:
  return f"{num_bytes / 2**20:.1f} MiB" if num_bytes >= 2**20 else f"{num_bytes / 2**10:.0f} KiB"


def add_audio(
  page: Page, caption: str, path, max_seconds: float | None, max_bytes: int | None
) -> None:
  path = Path(path)
  try:
    data, cut = wav_clip(path, max_seconds)
  except OSError as error:
    page.add(
      f'<p class="note">Audio “{escape(caption)}” is missing: {escape(path)} '
      f"({escape(error.strerror or error)}).</p>"
    )
    return
  if max_bytes is not None and len(data) > max_bytes:
    page.add(
      f'<p class="note">Audio “{escape(caption)}” is not embedded: '
      f"{_size(len(data))} is over the {_size(max_bytes)} limit; "
      f"the file is {escape(path)}.</p>"
    )
    return
  src = "data:audio/wav;base64," + base64.b64encode(data).decode("ascii")
  note = f" ({escape(cut)})" if cut else ""
  page.add(
    f'<figure class="audio"><figcaption>{escape(caption)}{note}</figcaption>'
    f'<audio controls preload="metadata" src="{src}"></audio></figure>'
  )


def add_figures(page: Page, entries: Iterable[tuple[str, Any]]) -> None:
  entries = list(entries)
  if entries:
    page.add('<div class="figures">')
    for caption, path in entries:
      add_figure(page, caption, path)
    page.add("</div>")
