"""alpha: farm perpetual-futures funding rates while staying delta-neutral."""

__version__ = "0.1.0"
