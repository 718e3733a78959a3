"""Programs the scenarios run as rank processes (with the operator's env contract)."""
