"""The version, in one place: the build (hatch) reads it from here, `--version` prints it."""

__version__ = "0.1.0"
