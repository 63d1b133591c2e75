"""`mtx-launch tpu`: not built yet."""

from mtx.errors import ConfigError


def main(extra: list[str]) -> None:
  raise ConfigError("mtx-launch tpu is not built yet")
