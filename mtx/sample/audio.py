"""Audio from MIDI: FluidSynth with a General MIDI soundfont (Debian: fluidsynth and
fluid-soundfont-gm), as mtx-sample --render=wav and mtx-eval's report use it."""

from __future__ import annotations

import os
import shutil
import subprocess

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def render_wav(midi_path: str, wav_path: str, soundfont: str = DEFAULT_SOUNDFONT) -> str | None:
  """Renders `midi_path` to a 44.1 kHz WAV; returns why not when it cannot."""
  if not shutil.which("fluidsynth"):
    return "fluidsynth is not installed (Debian: apt install fluidsynth fluid-soundfont-gm)"
  if not os.path.isfile(soundfont):
    return f"no soundfont at {soundfont} (Debian: apt install fluid-soundfont-gm)"
  done = subprocess.run(
    ["fluidsynth", "-ni", "-F", wav_path, "-r", "44100", soundfont, midi_path],
    capture_output=True,
    text=True,
  )
  return None if done.returncode == 0 else f"fluidsynth failed: {done.stderr.strip()[:200]}"
