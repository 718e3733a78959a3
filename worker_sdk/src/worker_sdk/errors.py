"""The errors the SDK raises besides ValueError/TypeError for invalid arguments."""

from __future__ import annotations


class JobEnvironmentError(RuntimeError):
    """The process has part of the trainjob environment (docs/architecture.md, "The rank
    environment") but not all of it."""


class CoordinatorError(RuntimeError):
    """The coordinator refused a message (4xx), or could not be reached when it had to be."""


class CheckpointUploadError(RuntimeError):
    """A checkpoint's files could not be uploaded; that checkpoint is never committed."""


class CheckpointCorruptError(RuntimeError):
    """A committed checkpoint's files differ from what its manifest recorded (size or SHA-256):
    it is refused rather than loaded."""
