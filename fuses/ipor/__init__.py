"""IPOR Fusion: the daemon as the Alpha of an on-chain PlasmaVault (``fuses.ipor.vault``) and a local vault to try it on."""
