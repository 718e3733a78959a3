"""The peer programs (Ray Train), run under .venv-bench/bin/python."""
