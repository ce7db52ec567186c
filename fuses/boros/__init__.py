"""The Pendle Boros fuse: rate swaps on a perp venue's funding rate (``BorosFuse``, a ``RateVenue``)."""
