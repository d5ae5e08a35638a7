"""Errors a user can cause and fix. The CLI prints these as one line and exits non-zero."""


class GlassError(Exception):
    """A user-facing error: bad input, a missing file, an impossible request."""


class ContextLengthError(GlassError, ValueError):
    """More tokens than the model's context window (G11)."""


class CheckpointError(GlassError):
    """A checkpoint, weight file or model folder that cannot be read."""
