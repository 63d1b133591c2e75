"""What every mtx binary shares: absl startup and the one-line error contract.

Bad input (an `MtxError`, or a bad flag) prints one line naming the problem
to stderr and exits with status 2; anything else is a bug and keeps its
traceback.

`--help` prints the binary's docstring and its own flags and exits 0. absl's
`--help` lists the flags of `__main__`, and under a console script
(`mtx-sample`) `__main__` is setuptools' wrapper, which defines none: a
newcomer saw only "Try --helpfull" (and exit status 1). `--helpfull` lists
every flag, absl's and the libraries' too, and exits 0 as well.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from absl import app, flags

from mtx.errors import MtxError

BAD_INPUT_EXIT_CODE = 2
# absl's spellings of its help flags (one or two dashes).
_HELP = frozenset({"help", "helpshort", "?"})
_HELP_FULL = "helpfull"


def _help_asked(argv: list[str]) -> str | None:
  """ "help" or "helpfull" when the command line asks for it (before a `--`)."""
  for arg in argv[1:]:
    if arg == "--":
      break
    if arg.startswith("-"):
      name = arg.lstrip("-")
      if name == _HELP_FULL:
        return _HELP_FULL
      if name in _HELP:
        return "help"
  return None


def binary_help(module_name: str, full: bool = False) -> str:
  """The binary's docstring, then the flags its module defines (every flag
  with `full`): what `--help` prints."""
  module = sys.modules.get(module_name)
  doc = (getattr(module, "__doc__", None) or "").strip("\n")
  if full:
    listed = flags.FLAGS.get_help()
  else:
    # A binary whose flags live in the modules it dispatches to names them (mtx-launch).
    names = (module_name, *getattr(module, "HELP_FLAG_MODULES", ()))
    listed = "\n".join(filter(None, (flags.FLAGS.module_help(name) for name in names)))
  hint = "" if full else "\n\nTry --helpfull for every flag (absl's and the libraries' too)."
  return f"{doc}\n\nflags:\n{listed}{hint}\n"


def _parse_flags(argv: list[str], module_name: str = "__main__") -> list[str]:
  asked = _help_asked(argv)
  if asked:
    sys.stdout.write(binary_help(module_name, full=asked == _HELP_FULL))
    sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"{argv[0]}: {e}", file=sys.stderr)
    sys.exit(BAD_INPUT_EXIT_CODE)
  except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing field
    print(
      f"{argv[0]}: a --config.* override names a field the config does not have ({e}); "
      "configs/base.py lists every field",
      file=sys.stderr,
    )
    sys.exit(BAD_INPUT_EXIT_CODE)
  except Exception as e:  # pylint: disable=broad-except
    # A config file (ml_collections runs its get_config while parsing) that fails.
    print(
      f"{argv[0]}: a flag's value could not be parsed: {type(e).__name__}: {e}", file=sys.stderr
    )
    sys.exit(BAD_INPUT_EXIT_CODE)


def run(main: Callable[[list[str]], None]) -> None:
  """Runs `main` under absl, turning `MtxError` into one line and exit code 2."""

  def guarded(argv: list[str]) -> None:
    try:
      main(argv)
    except MtxError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(BAD_INPUT_EXIT_CODE)

  app.run(guarded, flags_parser=functools.partial(_parse_flags, module_name=main.__module__))
