"""Signal-to-order execution daemon for Bybit V5."""

__version__ = "0.1.0"
