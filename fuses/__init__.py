"""Fuses: the vault's connectors to venues and markets."""
