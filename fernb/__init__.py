"""fernb: the helper package of the fernb book.

Models, capsule routing, AU-aware attention, LBP, data loaders, training, metrics and
analysis for five papers on facial expression recognition and action-unit detection.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fernb")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
