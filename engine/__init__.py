"""Claimflow: the revenue-cycle engine (stages, codec, broker, settings, CLI)."""
