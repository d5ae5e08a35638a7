"""Errors a user can cause and fix, and the one token check every model runs. The CLI prints these
as one line and exits non-zero."""


class GlassError(Exception):
    """A user-facing error: bad input, a missing file, an impossible request."""


class ContextLengthError(GlassError, ValueError):
    """More tokens than the model's context window (G11)."""


class CheckpointError(GlassError):
    """A checkpoint, weight file or model folder that cannot be read."""


def check_tokens(tokens, d_vocab: int, n_ctx: int, offset: int = 0, what: str = "input") -> None:
    """The context window (G11) and the vocabulary are hard limits of every model: say so clearly.

    tokens: (..., T) ids, after `offset` already cached; `what` names them ("input", "source", "target").
    """
    T = tokens.shape[-1]
    if offset + T > n_ctx:
        cached = f" ({offset} already cached)" if offset else ""
        named = "" if what == "input" else f" in the {what}"
        raise ContextLengthError(f"{offset + T} tokens{named} exceed the context window of {n_ctx} tokens{cached}")
    if T == 0:
        raise GlassError(f"the {what} has no tokens")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= d_vocab):
        raise GlassError(f"{what} token ids must lie in [0, {d_vocab}), got {int(tokens.min())}..{int(tokens.max())}")
