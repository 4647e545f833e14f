"""motpipe: Moments-of-Truth customer-journey pipeline."""

__version__ = "0.1.0"
