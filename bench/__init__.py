"""Benchmarks: every scenario prints one JSON line (`make bench`, or `python -m bench.<scenario>`)."""
