"""What a model's learned tables encode: cosine similarities and the octave score.

A field's input embedding (FieldEmbeddings.tables[f], (V, D)) and its output head (the rows
of FieldHeads.heads[f].kernel.T, (V, D)) each give every code a vector. Codes the model
treats alike get similar vectors: the MMT paper's pitch-embedding plot (Dong et al. 2023,
fig. 4) shows bands at +-12 semitones, octaves learned from data alone. The octave score
puts a number on those bands:

    octave_mean = mean of S[i, j] over pitch codes i != j with |i - j| = 12
    other_mean  = mean of S[i, j] over the other pairs i != j
    score       = octave_mean - other_mean

S the cosine similarity of the pitch table. A random table scores about 0 (its cosines are
about N(0, 1 / D)); a table whose vectors are their pitch class's vector plus small noise
scores near 1, less the share of the other pairs two or more octaves apart (alike too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx

from mtx.errors import ConfigError


def cosine_similarity(table: Any) -> np.ndarray:
  """(V, D) -> (V, V) float64: S[i, j] = t_i . t_j / (|t_i| |t_j|); a zero row's similarity
  with everything, itself included, is 0."""
  table = np.asarray(table, np.float64)
  norms = np.linalg.norm(table, axis=1, keepdims=True)
  unit = table / np.where(norms > 0, norms, 1.0)
  return unit @ unit.T


def _value(leaf: Any) -> np.ndarray:
  """A parameter as numpy, from an nnx Variable or a plain array."""
  return np.asarray(leaf[...] if isinstance(leaf, nnx.Variable) else leaf, np.float32)


def _item(node: Any, index: int) -> Any:
  """node[index] for an nnx.List's state, whose keys are ints (strings after some
  serializations)."""
  try:
    return node[index]
  except (KeyError, TypeError):
    return node[str(index)]


def field_tables(
  model: Any, field_names: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{field name: (input embedding (V, D), output head rows (V, D))}, float32 numpy.

  model: a `Decoder`, its parameter state (`nnx.state(model, nnx.Param)`, a checkpoint's
  `params`) or that state as a pure dict. field_names: the codec's `fields.names`, in the
  model's field order. The head rows are kernel.T: row v is the vector whose dot product
  with the final hidden state gives code v's logit (bias aside).
  """
  params = nnx.state(model, nnx.Param) if isinstance(model, nnx.Module) else model
  tables, heads = params["embeddings"]["tables"], params["heads"]["heads"]
  if len(tables) != len(field_names):
    raise ConfigError(
      f"the model has {len(tables)} field tables but {len(field_names)} "
      f"field names were given ({', '.join(field_names)}); pass the "
      "codec's fields.names of the run the model was trained with"
    )
  out = {}
  for f, name in enumerate(field_names):
    embedding = _value(_item(tables, f)["embedding"])
    kernel = _value(_item(heads, f)["kernel"])  # (D, V)
    out[name] = (embedding, kernel.T)
  return out


def octave_score(similarity: Any, first_code: int = 1, last_code: int = 128) -> dict[str, float]:
  """The octave score of a pitch field's similarity matrix (module docstring).

  similarity (V, V); codes first_code..last_code are consecutive semitones (MMT's pitch
  field: codes 1..128 are MIDI pitches 0..127). Returns octave_mean, other_mean, score
  (their difference), and num_octave_pairs, num_other_pairs (ordered pairs).
  """
  similarity = np.asarray(similarity, np.float64)
  if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
    raise ValueError(f"octave_score: similarity must be (V, V); got {similarity.shape}")
  if not (0 <= first_code and first_code + 12 <= last_code < similarity.shape[0]):
    raise ValueError(
      f"octave_score: codes {first_code}..{last_code} must lie in "
      f"0..{similarity.shape[0] - 1} and span more than an octave"
    )
  block = similarity[first_code : last_code + 1, first_code : last_code + 1]
  codes = np.arange(block.shape[0])
  distance = np.abs(codes[:, None] - codes[None, :])
  octave, other = distance == 12, (distance != 12) & (distance != 0)
  octave_mean, other_mean = float(block[octave].mean()), float(block[other].mean())
  return {
    "octave_mean": octave_mean,
    "other_mean": other_mean,
    "score": octave_mean - other_mean,
    "num_octave_pairs": int(octave.sum()),
    "num_other_pairs": int(other.sum()),
  }
