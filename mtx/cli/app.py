"""What every mtx binary shares: absl startup and the one-line error contract.

Bad input (an `MtxError`, or a bad flag) prints one line naming the problem
to stderr and exits with status 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags

from mtx.errors import MtxError

BAD_INPUT_EXIT_CODE = 2


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"{argv[0]}: {e}", file=sys.stderr)
    sys.exit(BAD_INPUT_EXIT_CODE)
  except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing field
    print(f"{argv[0]}: a --config.* override names a field the config does not have ({e}); "
          "configs/base.py lists every field", file=sys.stderr)
    sys.exit(BAD_INPUT_EXIT_CODE)
  except Exception as e:  # pylint: disable=broad-except
    # A config file (ml_collections runs its get_config while parsing) that fails.
    print(f"{argv[0]}: a flag's value could not be parsed: {type(e).__name__}: {e}",
          file=sys.stderr)
    sys.exit(BAD_INPUT_EXIT_CODE)


def run(main: Callable[[list[str]], None]) -> None:
  """Runs `main` under absl, turning `MtxError` into one line and exit code 2."""

  def guarded(argv: list[str]) -> None:
    try:
      main(argv)
    except MtxError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(BAD_INPUT_EXIT_CODE)

  app.run(guarded, flags_parser=_parse_flags)
