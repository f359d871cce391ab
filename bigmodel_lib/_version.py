"""The library's version, in a module of its own so that every other module can read it
without importing the package root (imports point down; see the package docstring)."""

__version__ = "0.1.0"
