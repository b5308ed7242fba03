"""The package version: the one place it is kept (pyproject.toml reads it: dynamic version)."""

__version__ = "0.3.0"
