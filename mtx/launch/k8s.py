"""`mtx-launch k8s`: not built yet."""

from mtx.errors import ConfigError


def main(extra: list[str]) -> None:
  raise ConfigError("mtx-launch k8s is not built yet")
