"""Market data sources for the simulated world (the synthetic generator of demo mode)."""
