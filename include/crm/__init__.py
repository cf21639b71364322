"""Customer-relationship analytics platform for retail banks."""

__version__ = "0.1.0"
