"""The JSON API's request bodies, as pydantic models (FastAPI describes them in /openapi.json).

Field bounds here are the fixed ones; limits that depend on the server (prompt length,
max_new_tokens, the context window) are checked by the app against its `Limits`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="a model id from GET /api/models; none: the first one")


class PromptRequest(_Body):
    prompt: str = Field(..., description="the text to run through the model")


class HeadRequest(PromptRequest):
    layer: int = Field(..., ge=0)
    head: int = Field(..., ge=0)


class LensRequest(PromptRequest):
    k: int = Field(5, ge=1, description="best guesses kept at each layer and position")


class EmbedRequest(_Body):
    op: Literal["nearest", "analogy", "project"]
    words: list[str] = Field(default_factory=list, max_length=50,
                             description="nearest: [w]; analogy: [a, b, c] for a − b + c; project: the words to place")
    pairs: list[list[str]] = Field(default_factory=list, max_length=20,
                                   description="project: pairs [first, second]; the direction is mean(second − first)")
    k: int = Field(10, ge=1)
    space: Literal["embed", "unembed"] = "embed"


class SamplingRequest(PromptRequest):
    """The sampling settings of the page (G12): temperature, then top-k, top-p, min-p."""

    temperature: float = Field(1.0, ge=0.0, le=100.0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, lt=2**63, description="the sampler's seed; none: a random draw")


class PipelineRequest(SamplingRequest):
    position: int | None = Field(None, ge=0, description="the token followed through the model; none: the last")
    layer: int = Field(0, ge=0)
    head: int = Field(0, ge=0)


class StepRequest(SamplingRequest):
    """One more token, drawn as the first token of a generation with the same settings and seed."""


class GenerateRequest(SamplingRequest):
    max_new_tokens: int = Field(64, ge=1)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    stop_strings: list[str] = Field(default_factory=list, max_length=8)
    chat: bool = Field(False, description="wrap the prompt as one user message in the model's chat template (G10)")


class TranslateRequest(_Body):
    text: str = Field(..., description="the source to translate, e.g. 1947 for digits-to-words")
    beam: int = Field(1, ge=1, le=8, description="1: greedy; more: beam search with this many beams")
