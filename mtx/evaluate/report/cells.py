"""One report value as the text of a table cell or a line: what fits in a cell, numbers
at four significant digits, long lists and matrices as their size and range."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

_MAX_INLINE_LIST = 8


def is_scalar(value) -> bool:
  return value is None or isinstance(value, (bool, int, float, str, np.generic))


def is_summary(value) -> bool:
  """A mean with its spread ({"mean", "std"}, maybe counts of values and of NaNs): one
  number to a reader."""
  return (
    isinstance(value, Mapping)
    and "mean" in value
    and set(value) <= {"mean", "std", "n", "count", "nan"}
    and all(is_scalar(v) for v in value.values())
  )


def is_flat(value) -> bool:
  """A non-empty dict whose every value fits in a cell: one row of a table."""
  return (
    isinstance(value, Mapping)
    and bool(value)
    and not is_summary(value)
    and all(is_cell(v) for v in value.values())
  )


def is_cell(value) -> bool:
  """What fits in one table cell: a scalar, a short list of scalars, a mean +- std."""
  if is_scalar(value) or is_summary(value):
    return True
  if isinstance(value, (list, tuple)):
    return len(value) <= _MAX_INLINE_LIST and all(is_scalar(v) for v in value)
  return False


def format_number(value) -> str:
  """Four significant digits; thousands grouped where the integer part says it all."""
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, int):
    return f"{value:,}"
  if math.isnan(value):
    return "n/a"
  if math.isinf(value):
    return "∞" if value > 0 else "−∞"
  if 1e3 <= abs(value) < 1e9:
    return f"{value:,.0f}"
  return f"{value:.4g}"


def scalar_text(value) -> str:
  if isinstance(value, np.generic):
    value = value.item()
  if value is None:
    return "—"
  if isinstance(value, str):
    return value
  return format_number(value)


def cell_text(value) -> str:
  if is_summary(value):
    text = scalar_text(value["mean"])
    if "std" in value:
      text += f" ± {scalar_text(value['std'])}"
    if value.get("nan"):
      text += f" ({scalar_text(value['nan'])} NaN)"
    return text
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(scalar_text(v) for v in value) + "]"
  return scalar_text(value)


def is_numeric(value) -> bool:
  if is_summary(value):
    return True
  return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def list_text(values: Sequence) -> str:
  """A long list of numbers in a line: its size and range, not a wall of digits."""
  numbers = np.asarray(
    [v for v in values if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)],
    np.float64,
  )
  if len(values) <= _MAX_INLINE_LIST or numbers.size != len(values):
    return ", ".join(scalar_text(v) for v in values)
  finite = numbers[np.isfinite(numbers)]
  if not finite.size:
    return f"{len(values)} values, none finite"
  return (
    f"{len(values)} values: min {format_number(float(finite.min()))}, "
    f"mean {format_number(float(finite.mean()))}, max {format_number(float(finite.max()))}"
  )


def numeric_array(values) -> np.ndarray | None:
  try:
    array = np.asarray(values)
  except ValueError:  # ragged
    return None
  return array if array.dtype.kind in "iuf" else None


def array_text(array: np.ndarray) -> str:
  """A matrix in the report (a similarity table, gains per head): its shape and range;
  the figures show it."""
  finite = array[np.isfinite(array)]
  shape = " × ".join(str(n) for n in array.shape)
  if not finite.size:
    return f"array {shape}, none finite"
  return (
    f"array {shape}: min {format_number(float(finite.min()))}, "
    f"mean {format_number(float(finite.mean()))}, max {format_number(float(finite.max()))}"
  )
