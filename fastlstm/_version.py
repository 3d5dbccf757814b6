"""The version of fastlstm, in one place: pyproject.toml reads it, fastlstm.__version__ is it."""
__version__ = "0.2.0.dev0"
