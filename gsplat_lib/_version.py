"""The package version (pyproject.toml states it for the build)."""

__version__ = "0.1.0"
