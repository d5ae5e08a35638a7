"""The explorer's server: `create_app(...)` returns a FastAPI app serving the page and its JSON API.

Model work runs in the thread pool (plain `def` endpoints, and one thread step per token
for a generation), so one slow request never blocks the others. Each model's forward
passes take its fair lock (web/schedule.py): a generation's decode step waits behind at
most one full forward pass. Every error is JSON — {"error": message, "status": code} — with
413 (body too large), 422 (invalid request, prompt beyond a limit), 400 (malformed JSON),
404 (unknown model), 421 (a Host header that is not this server's) and 429 (too many
generations, or heavy requests, at once).

Bounds (Limits): a prompt's characters, each heavy route's tokens (the lens computes its
top-k in chunks), at most `max_heavy_requests` model requests in flight. The API is
described at /openapi.json; there is no /docs page (it would load its script from a CDN).
Seq2seq runs under --runs are a kind apart (web/seq2seq.py): /api/seq2seq/models and
/api/seq2seq/translate, with the cross-attention alignment of each decoder layer.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..chat import PLAIN_STOPS, PLAIN_TEMPLATE, render
from ..errors import GlassError
from ..generate import SampleConfig, Sampler, stream
from . import analysis, tokens as tokview
from .api import (EmbedRequest, GenerateRequest, HeadRequest, LensRequest, PipelineRequest, PromptRequest,
                  SamplingRequest, StepRequest, TranslateRequest)
from .limits import Limits
from .pipeline import pipeline
from .registry import Entry, Registry, UnknownModel
from .schedule import Admission, Busy, bound_heap, release_memory
from .seq2seq import Translators, translate

STATIC = Path(__file__).parent / "static"


class ApiError(GlassError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Generations:
    """Counts generations in flight and caps them (429 beyond the cap)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.active = self.started = 0
        self.ended = {"finished": 0, "cancelled": 0, "rejected": 0}  # how each one ended
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.active >= self.cap:
                raise ApiError(429, f"{self.active} generations are already running (the limit is {self.cap}); "
                                    "try again when one ends")
            self.active += 1
            self.started += 1

    def release(self, outcome: str) -> None:
        """outcome: "finished" (ran to its end or failed cleanly), "cancelled" (the client left),
        "rejected" (refused before it began)."""
        with self._lock:
            self.active -= 1
            self.ended[outcome] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"active": self.active, "started": self.started, **self.ended, "limit": self.cap}


class BodyLimit:
    """Reject request bodies over max_bytes with 413, before any endpoint reads them (pure ASGI)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:  # read the whole body (it is small by now), counting
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls: disconnect notices for streaming responses

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        response = _error(413, f"the request body is larger than {self.max_bytes} bytes")
        await response(scope, receive, send)


LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostCheck:
    """Answer only requests whose Host header names this server: the address it is bound to, or
    localhost. A web page elsewhere cannot reach the API through a name it controls (DNS rebinding)."""

    def __init__(self, app, allowed: set[str]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        name = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
        if name not in self.allowed:
            response = _error(421, f"this server answers requests for {', '.join(sorted(self.allowed))}, "
                                   f"not for Host {host[:80]!r}")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def create_app(
    model=None,
    runs_dir: str | Path | None = None,
    limits: Limits | None = None,
    include_default: bool = True,
    host: str = "127.0.0.1",
) -> FastAPI:
    """The explorer app.

    model: a path (GGUF, Hugging Face folder, run folder) or an already loaded `Loaded`;
        it comes first in the model picker.
    runs_dir: a folder whose run folders (and Hugging Face folders) the picker lists.
    include_default: list SmolLM2-135M-Instruct when its GGUF is installed.
    host: the address the server binds; requests must name it (or localhost) in their Host header.
        A non-loopback address prints a warning: anyone who can reach it can use the model.
    """
    limits = limits or Limits()
    host = host.strip("[]").lower()
    allowed = LOOPBACK_NAMES | {host}
    if not is_loopback(host):
        print(f"warning: binding {host} makes the explorer reachable from other machines: anyone who can reach "
              f"it can run the model; it answers only requests addressed to {host} or localhost", file=sys.stderr)
    registry = Registry(model, runs_dir, include_default)
    translators = Translators(runs_dir)  # seq2seq runs under runs_dir: a kind of their own
    generations = Generations(limits.max_generations)
    heavy = Admission(limits.max_heavy_requests)
    bound_heap()
    app = FastAPI(title="glassgpt explorer", version=__version__, docs_url=None, redoc_url=None,
                  description="Watch a GPT think: tokens, the next-token distribution, attention, "
                              "the logit lens, embeddings, one token's pipeline and generation.")
    app.state.registry, app.state.limits, app.state.generations = registry, limits, generations
    app.state.translators, app.state.heavy = translators, heavy
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(HostCheck, allowed=allowed)  # added last: runs first
    _add_error_handlers(app)

    read_out = threading.Lock()  # one lens read-out at a time (its chunks are the largest arrays)

    def with_prompt(req: PromptRequest, work, route: str, after=None, max_tokens: int | None = None):
        """Load the model, tokenise the prompt and run `work(loaded, ids)` under the model's lock,
        if the server admits one more heavy request and the prompt is within the route's token cap.
        `after(loaded, out)`, if given, finishes the work outside the model's lock (no hooks)."""
        if len(req.prompt) > limits.max_prompt_chars:
            raise ApiError(422, f"the prompt has {len(req.prompt)} characters; the limit is {limits.max_prompt_chars}")
        with heavy.admit():
            entry = registry.get(req.model)
            ids = analysis.encode(entry.loaded, req.prompt)
            analysis.check_tokens(ids, max_tokens or limits.max_analysis_tokens, route)
            with entry.lock.full():
                out = work(entry.loaded, ids)
            if after is not None:
                with read_out:
                    out = after(entry.loaded, out)
            return {"model": entry.id, "tokens": analysis.token_chips(entry.loaded, ids), **out}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/models", summary="the models this server offers (ids for the other requests)")
    def models() -> dict:
        return {"models": [e.describe() for e in registry.entries()]}

    @app.get("/api/models/{model_id:path}", summary="one model's shape (loads it)")
    def model_info(model_id: str) -> dict:
        return registry.get(model_id).describe()

    @app.get("/api/status", summary="generations and heavy requests in flight, and the server's limits")
    def status() -> dict:
        return {"generations": generations.snapshot(), "heavy": heavy.snapshot(), "limits": vars(limits)}

    @app.post("/api/analyze", summary="the prompt's tokens and the next-token logits (G12)")
    def analyze(req: PromptRequest) -> dict:
        return with_prompt(req, lambda loaded, ids: {"next": analysis.next_token(loaded, ids, limits.top_n)},
                           "the next-token distribution")

    @app.post("/api/attention", summary="every layer × head pattern, as bytes (p·255), for thumbnails (T8)")
    def attention(req: PromptRequest) -> dict:
        return with_prompt(req, lambda loaded, ids: analysis.attention_grid(loaded, ids, limits.max_attention_cells),
                           "the attention grid")

    @app.post("/api/attention/head", summary="one head's full pattern as floats")
    def attention_head(req: HeadRequest) -> dict:
        return with_prompt(req, lambda loaded, ids: analysis.head_pattern(loaded, ids, req.layer, req.head),
                           "one head's pattern")

    @app.post("/api/lens", summary="the logit lens: each layer's best guesses at each position (G6)")
    def lens(req: LensRequest) -> dict:
        k = min(req.k, limits.max_lens_k)
        return with_prompt(req, analysis.lens_stages, "the logit lens",
                           after=lambda loaded, resid: analysis.lens_top(loaded, resid, k),
                           max_tokens=min(limits.max_lens_tokens, limits.max_analysis_tokens))

    @app.post("/api/pipeline", summary="one token through one layer and head, stage by stage, with the real "
                                       "numbers (scores: null stands for −∞, a masked key)")
    def pipeline_route(req: PipelineRequest) -> dict:
        cfg = _sampling(req)

        def work(loaded, ids):
            position = len(ids) - 1 if req.position is None else req.position
            return pipeline(loaded, ids, position, req.layer, req.head, cfg)

        return with_prompt(req, work, "the pipeline")

    @app.post("/api/step", summary="draw one next token with the sampling settings (as a generation's first token)")
    def step(req: StepRequest) -> dict:
        cfg = _sampling(req)

        def work(loaded, ids):
            with torch.no_grad():
                logits = loaded.model(torch.tensor([ids]), last_only=True)[:, -1].float()  # (1, d_vocab)
            token = int(Sampler(cfg).sample(logits)[0])
            return {"next": dict(tokview.chip(loaded.tokenizer, token), logit=float(logits[0, token])),
                    "text": loaded.tokenizer.decode(ids + [token])}

        return with_prompt(req, work, "a step")

    @app.post("/api/embed", summary="embedding arithmetic: nearest, a − b + c, projection on a direction (G9)")
    def embed(req: EmbedRequest) -> dict:
        entry = registry.get(req.model)
        if any(len(w) > 100 for w in req.words + [w for p in req.pairs for w in p]):
            raise ApiError(422, "a word is longer than 100 characters")
        with heavy.admit(), entry.lock.full():
            out = analysis.embed_lab(entry.loaded, req.op, req.words, req.pairs, min(req.k, limits.max_embed_k),
                                     req.space)
        return {"model": entry.id, **out}

    @app.post("/api/generate", summary="stream a continuation as server-sent events; closing the stream stops it")
    async def generate(req: GenerateRequest) -> StreamingResponse:
        if req.max_new_tokens > limits.max_new_tokens:
            raise ApiError(422, f"max_new_tokens is {req.max_new_tokens}; the limit is {limits.max_new_tokens}")
        if len(req.prompt) > limits.max_prompt_chars:
            raise ApiError(422, f"the prompt has {len(req.prompt)} characters; the limit is {limits.max_prompt_chars}")
        generations.acquire()
        try:
            entry, ids, stops = await run_in_threadpool(_prepare, registry, req)
            cfg = SampleConfig(max_new_tokens=req.max_new_tokens, temperature=req.temperature, top_k=req.top_k,
                               top_p=req.top_p, min_p=req.min_p, repetition_penalty=req.repetition_penalty,
                               seed=req.seed, stop_strings=stops, stop_ids=entry.loaded.stop_ids)
        except BaseException:
            generations.release("rejected")
            raise
        return StreamingResponse(_events(entry, ids, cfg, generations), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/seq2seq/models", summary="the translators (seq2seq runs) under --runs")
    def seq2seq_models() -> dict:
        return {"models": [t.describe() for t in translators.entries()]}

    @app.get("/api/seq2seq/models/{model_id:path}", summary="one translator's shape and task (loads it)")
    def seq2seq_model_info(model_id: str) -> dict:
        return translators.get(model_id).describe()

    @app.post("/api/seq2seq/translate", summary="translate, with each decoder layer's cross-attention alignment (T5)")
    def seq2seq_translate(req: TranslateRequest) -> dict:
        entry = translators.get(req.model)
        with entry.lock:
            return {"model": entry.id, **translate(entry.run, req.text, req.beam)}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _sampling(req: SamplingRequest) -> SampleConfig:
    return SampleConfig(max_new_tokens=1, temperature=req.temperature, top_k=req.top_k, top_p=req.top_p,
                        min_p=req.min_p, seed=req.seed)


def _prepare(registry: Registry, req: GenerateRequest) -> tuple[Entry, list[int], list[str]]:
    """The model, the prompt's ids and the stop strings; as one user message in the chat template if asked."""
    entry = registry.get(req.model)
    text, stops = req.prompt, list(req.stop_strings)
    if req.chat:
        template = entry.loaded.chat_template or PLAIN_TEMPLATE
        text = render(template, [{"role": "user", "content": req.prompt}], bos_token=entry.loaded.bos_token or "",
                      eos_token=entry.loaded.eos_token or "")
        if entry.loaded.chat_template is None:
            stops += PLAIN_STOPS
    ids = analysis.encode(entry.loaded, text)
    n_ctx = entry.loaded.model.cfg.n_ctx
    if len(ids) + req.max_new_tokens > n_ctx:
        raise ApiError(422, f"the prompt's {len(ids)} tokens + max_new_tokens {req.max_new_tokens} exceed "
                            f"the context window of {n_ctx} tokens")
    return entry, ids, stops


def _sse(data: dict, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


_END = object()


def _step(entry: Entry, pieces, first: bool):
    """One more piece of text (one or a few tokens), under the model's lock. The first step
    runs the prompt through the model (a full pass); the others are decode steps."""
    with entry.lock.full() if first else entry.lock.decode():
        return next(pieces, _END)


async def _events(entry: Entry, ids: list[int], cfg: SampleConfig, generations: Generations):
    """start, then one message per text piece, then done — or error. Cancelled when the client leaves."""
    pieces = stream(entry.loaded.model, entry.loaded.tokenizer, ids, cfg)
    completed = False
    n = 0
    try:
        yield _sse({"model": entry.id, "prompt": entry.loaded.tokenizer.decode(ids), "prompt_tokens": len(ids),
                    "max_new_tokens": cfg.max_new_tokens}, "start")
        while True:
            piece = await run_in_threadpool(_step, entry, pieces, n == 0)
            if piece is _END:
                break
            n += 1
            yield _sse({"text": piece})
        completed = True
        yield _sse({"pieces": n}, "done")
    except GlassError as e:
        completed = True
        yield _sse({"error": str(e)}, "error")
    finally:
        pieces.close()  # not running now (each step ran to its end); its KV cache goes with it
        generations.release("finished" if completed else "cancelled")
        release_memory()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return _error(e.status, str(e))

    @app.exception_handler(Busy)
    async def busy(request: Request, e: Busy):
        return _error(429, str(e))

    @app.exception_handler(UnknownModel)
    async def unknown_model(request: Request, e: UnknownModel):
        return _error(404, str(e))

    @app.exception_handler(GlassError)
    async def glass_error(request: Request, e: GlassError):
        return _error(422, str(e).replace("\n", " "))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        errors = e.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return _error(400, "the request body is not valid JSON")
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}"
                           + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception):
        return _error(500, f"internal error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
