"""Shared domain package for the people-data sync app (deployed as a Lambda layer)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
