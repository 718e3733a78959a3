"""The security suite's shared stack (see `security_support`)."""

from tests.security.security_support import secure

__all__ = ["secure"]
