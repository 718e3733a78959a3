"""Fixtures of the coordinator tests; the harness itself is in coordinator_harness.py."""

from coordinator_harness import start_coordinator

__all__ = ["start_coordinator"]
