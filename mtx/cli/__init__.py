"""Thin absl binaries: parse flags, call the library, report errors in one line."""
