"""The pure strategy core: signals, carry, decide, plan and apply."""
