"""The release this code is, in one place: pyproject.toml reads it, CHANGELOG.md names it, and
each function logs it when a container starts (observability.py)."""

__version__ = "0.2.0"
