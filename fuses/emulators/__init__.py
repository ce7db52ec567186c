"""Local emulators of real venues' wire protocols over the simulated engine.

Each emulator is an aiohttp application (``create_app``) that the real ccxt client can be
pointed at (``urls['api']`` override), so the ccxt fuse is tested against the protocol the
venue speaks. ``fuses.emulators.common`` holds the shared plumbing.
"""
