"""The risk gate and exposure functions (pure)."""
