"""trainjob worker SDK (placeholder until the SDK lands)."""
