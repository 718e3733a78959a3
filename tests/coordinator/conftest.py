"""Fixtures of the coordinator tests; the harness itself is in tests/support/coordinator.py."""

from tests.support.coordinator import start_coordinator

__all__ = ["start_coordinator"]
