"""Recorded market history: canonical formats, validating loaders, importers and the fetcher."""

from alpha.data.canonical import load_funding, load_prices, write_funding, write_prices
from alpha.data.series import (
    DataError,
    Duplicates,
    FundingRecord,
    FundingSeries,
    PricePoint,
    PriceSeries,
)

__all__ = [
    "DataError",
    "Duplicates",
    "FundingRecord",
    "FundingSeries",
    "PricePoint",
    "PriceSeries",
    "load_funding",
    "load_prices",
    "write_funding",
    "write_prices",
]
