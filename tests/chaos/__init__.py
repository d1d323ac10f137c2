"""Chaos, crash and load scenarios (issue 7); not in the default run: ``pytest tests/chaos``."""
