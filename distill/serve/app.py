"""`distillery serve`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) over the in-repo engine
or, for any local HF model, transformers.

Routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /health.
Request fields: model, messages | prompt, n, max_tokens (max_completion_tokens), temperature,
top_p, top_k, seed, stop, stream (+ stream_options.include_usage), chat_template_kwargs
{enable_thinking}, and `split_reasoning` (our extension; the server default is
--split-reasoning): the text inside `<think>` is returned as `reasoning_content` and the rest as
`content`, as vLLM's reasoning parsers and DeepSeek's API do. Responses carry usage counts and,
per choice, finish_reason ("stop" or "length") and vLLM's `stop_reason` (the stop string that
ended it, else null); the stop string itself is left out of the text, as OpenAI does.

Seeds: choice i of a request with seed s draws with seed s (i = 0) or sample_seed(s, i), each
row with its own generator, so a seeded request gives the same text alone or batched.

Batching and back-pressure: distill/serve/batcher.py (engine: requests join the running batch
between decode steps while it has room; a queue of at most --max-queue waiting requests, and a
full queue answers 429 with Retry-After). Shutdown (SIGINT/SIGTERM): uvicorn stops accepting,
finishes in-flight responses (up to --shutdown-timeout), then the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from distill.serve.batcher import Batcher, Job, QueueFull, Row, ShuttingDown
from distill.serve.faults import FaultInjector, parse_faults
from distill.serve.protocol import (RequestError, StreamText, chunk, cut_at_stop, error_body,
                                    new_id, parse_messages, parse_params, split_reasoning, sse)
from evals.generation import opens_thinking, sample_seed

log = logging.getLogger("distill.serve")


@dataclass
class ServeConfig:
    """What `distillery serve` runs (the CLI flags, one to one).

    model: a local checkpoint directory. backend: engine (ours, batched) | transformers.
    name: the served model name (default: the directory's name). max_batch: sequences decoded
    together; max_queue: requests waiting before 429. max_tokens: the default when a request
    gives none. enable_thinking / force_think: the chat template's switch, and `<think>\\n`
    appended where the template does not open it. split_reasoning: return `<think>` as
    reasoning_content by default. use_mtp: engine MTP speculation. faults, fault_seed,
    fault_delay_s, retry_after_s: distill/serve/faults.py. api_key_env: require
    `Authorization: Bearer $NAME` (unset: open).
    """

    model: str
    backend: str = "engine"
    name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 16
    max_queue: int = 64
    max_tokens: int = 1024
    enable_thinking: bool = True
    force_think: bool = False
    split_reasoning: bool = False
    use_mtp: bool = False
    dtype: str | None = None
    device: str | None = None
    faults: list[str] = field(default_factory=list)
    fault_seed: int = 0
    fault_delay_s: float = 5.0
    retry_after_s: float = 1.0
    api_key_env: str | None = None
    shutdown_timeout_s: float = 30.0

    def __post_init__(self):
        if self.backend not in ("engine", "transformers"):
            raise ValueError(f"--backend must be engine or transformers, got {self.backend!r}")
        if self.max_tokens < 1:
            raise ValueError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        self.fault_list = parse_faults(self.faults)
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ValueError(f"--api-key-env {self.api_key_env}: that environment variable is "
                             "not set")


class Server:
    """The model, the batcher and the request logic, apart from the HTTP routes."""

    def __init__(self, cfg: ServeConfig):
        from evals.config import ModelSpec
        from evals.generation import make_generator

        self.cfg = cfg
        self.name = cfg.name or os.path.basename(os.path.normpath(cfg.model))
        options = {"use_mtp": True} if cfg.use_mtp else {}
        spec = ModelSpec(self.name, cfg.model, cfg.backend, cfg.dtype, cfg.device,
                         options=options)
        self.generator = make_generator(spec, enable_thinking=cfg.enable_thinking,
                                        force_think=cfg.force_think)
        self.tokenizer = self.generator.tokenizer
        self.context = getattr(self._model_config(), "max_position_embeddings", None)
        self.batcher = Batcher(self._run_batch, cfg.max_batch, cfg.max_queue)

    def _model_config(self):
        gen = self.generator
        return gen.engine.config if gen.backend == "engine" else gen.model.config

    # -- the worker side -------------------------------------------------------------------------
    def _run_batch(self, rows: list[Row], temperature: float, top_p: float, top_k: int,
                   admit) -> None:
        gen = self.generator
        if gen.backend == "engine":
            gen.engine.generate(
                [r.ids for r in rows], max_new_tokens=[r.max_tokens for r in rows],
                temperature=temperature, top_p=top_p, top_k=top_k, eos_token_ids=None,
                seed=[r.seed for r in rows], use_mtp=gen.use_mtp,
                row_stop_strings=[r.stop for r in rows],
                on_tokens=lambda i, tokens, finish: rows[i].emit(tokens, finish, None),
                admit=lambda active: [(r.ids, r.max_tokens, r.seed, r.stop)
                                      for r in admit(active)])
            return
        from evals.config import SamplingParams

        for row in rows:  # transformers: one row at a time, each with its own seed (no admit)
            sampling = SamplingParams(temperature, top_p, top_k, row.max_tokens)
            ((tokens, reason, _),) = gen._run_batch([row.ids], [row.seed], sampling, row.stop)
            row.emit(list(tokens), reason, None)

    # -- the request side ------------------------------------------------------------------------
    def prompt_ids(self, kind: str, body: dict) -> tuple[list[int], bool]:
        """(token ids, whether the prompt opened `<think>`) of a chat or completion request."""
        if kind == "chat":
            messages = parse_messages(body)
            kwargs = body.get("chat_template_kwargs") or {}
            thinking = kwargs.get("enable_thinking", self.cfg.enable_thinking)
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False,
                enable_thinking=bool(thinking))
            if self.cfg.force_think and thinking and not opens_thinking(text):
                text += "<think>\n"
        else:
            text = body.get("prompt")
            if isinstance(text, list) and len(text) == 1:
                text = text[0]
            if not isinstance(text, str) or not text:
                raise RequestError("prompt must be one non-empty string", "prompt")
        ids = self.generator.encode(text)
        if self.context is not None and len(ids) >= self.context:
            raise RequestError(f"the prompt has {len(ids)} tokens; the context is "
                               f"{self.context}", "messages" if kind == "chat" else "prompt")
        return ids, opens_thinking(text)

    def submit(self, ids: list[int], params, loop, queue) -> None:
        rows = []
        base = params.seed if params.seed is not None else random.getrandbits(31)
        for i in range(params.n):
            seed = base if i == 0 else sample_seed(base, i)

            def emit(tokens, finish, error, i=i):
                loop.call_soon_threadsafe(queue.put_nowait, (i, tokens, finish, error))

            rows.append(Row(ids, params.max_tokens, seed, params.stop, emit))
        self.batcher.submit(Job(rows, params.temperature, params.top_p, params.top_k))


def create_app(cfg: ServeConfig, server: Server | None = None):
    """The ASGI app (faults wrapped around it when asked). A `server` passed in is shared: the
    app's shutdown leaves its worker running (its owner stops it)."""
    owned = server is None
    server = server or Server(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if owned:
            server.batcher.stop()

    app = FastAPI(title="distillery serve", lifespan=lifespan)
    app.state.server = server

    @app.middleware("http")
    async def authorize(request: Request, call_next):
        if cfg.api_key_env and request.url.path.startswith("/v1/"):
            expected = f"Bearer {os.environ.get(cfg.api_key_env, '')}"
            if request.headers.get("authorization") != expected:
                return fail(401, "invalid or missing API key", "authentication_error")
        return await call_next(request)

    @app.get("/health")
    async def health():
        faults = getattr(app.state, "faults", None)
        return {"status": "ok", "queued": server.batcher.queued(),
                "batches": server.batcher.batches,
                "faults": dict(faults.counts) if faults else {}}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": server.name, "object": "model",
                                            "created": int(time.time()), "owned_by": "distillery",
                                            "max_model_len": server.context}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await _handle(server, request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _handle(server, request, "text")

    if cfg.fault_list:
        wrapped = FaultInjector(app, cfg.fault_list, seed=cfg.fault_seed,
                                delay_s=cfg.fault_delay_s, retry_after_s=cfg.retry_after_s)
        app.state.faults = wrapped
        return wrapped
    return app


def fail(status: int, message: str, kind: str, param=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, param, status), status, headers=headers)


async def _handle(server: Server, request: Request, kind: str):
    """One chat or text completion request: checks, submission, and the response."""
    cfg = server.cfg
    try:
        body = await request.json()
    except ValueError:
        return fail(400, "the body is not JSON", "invalid_request_error")
    except ClientDisconnect:  # the client gave up (its timeout) before sending the body
        return Response(status_code=499)
    if not isinstance(body, dict):
        return fail(400, "the body must be a JSON object", "invalid_request_error")
    if body.get("model") not in (None, "", server.name):
        return fail(404, f"model {body.get('model')!r} is not served here; this server "
                    f"serves {server.name!r}", "invalid_request_error", "model")
    try:
        params = parse_params(body, cfg.max_tokens)
        ids, opened = server.prompt_ids(kind, body)
    except RequestError as e:
        return fail(400, str(e), "invalid_request_error", e.param)
    split = kind == "chat" and bool(body.get("split_reasoning", cfg.split_reasoning))
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()
    try:
        server.submit(ids, params, loop, queue)
    except QueueFull:
        return fail(429, f"the queue is full ({cfg.max_queue} requests waiting); retry",
                    "rate_limit", headers={"Retry-After": f"{cfg.retry_after_s:g}"})
    except ShuttingDown:
        return fail(503, "the server is shutting down", "server_error")
    answer = Answer(server, kind, params, ids, opened, split, queue)
    if params.stream:
        return StreamingResponse(answer.events(), media_type="text/event-stream")
    body, error = await answer.collect()
    return fail(500, error, "server_error") if error else JSONResponse(body)


class Answer:
    """One request's response, built from its rows' token events."""

    def __init__(self, server: Server, kind, params, ids, opened, split, queue):
        self.server, self.kind, self.params, self.queue = server, kind, params, queue
        self.prompt_tokens, self.opened, self.split = len(ids), opened, split
        self.id = new_id("chatcmpl" if kind == "chat" else "cmpl")

    async def collect(self) -> tuple[dict | None, str | None]:
        n = self.params.n
        tokens, finish = [[] for _ in range(n)], [None] * n
        while any(f is None for f in finish):
            i, new, reason, error = await self.queue.get()
            if error:
                return None, error
            tokens[i] += new
            finish[i] = reason or finish[i]
        choices = []
        for i in range(n):
            text = self.server.tokenizer.decode(tokens[i], skip_special_tokens=True)
            text, matched = cut_at_stop(text, self.params.stop)
            choice = {"index": i, "finish_reason": finish[i], "stop_reason": matched}
            if self.kind == "chat":
                message = {"role": "assistant", "content": text}
                if self.split:
                    reasoning, content = split_reasoning(text, self.opened)
                    message.update(content=content, reasoning_content=reasoning)
                choice["message"] = message
            else:
                choice["text"] = text
            choices.append(choice)
        completion = sum(len(t) for t in tokens)
        return {"id": self.id, "object": "chat.completion" if self.kind == "chat"
                else "text_completion", "created": int(time.time()), "model": self.server.name,
                "choices": choices, "usage": self._usage(completion)}, None

    def _usage(self, completion: int) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    async def events(self):
        n, name, kind = self.params.n, self.server.name, self.kind
        texts = [StreamText(self.server.tokenizer, self.params.stop, self.split, self.opened)
                 for _ in range(n)]
        if kind == "chat":
            for i in range(n):
                yield sse(chunk(self.id, name, kind, i, {"role": "assistant", "content": ""}))
        done, completion = 0, 0
        while done < n:
            i, new, reason, error = await self.queue.get()
            if error:
                yield sse(error_body(error, "server_error"))
                break
            completion += len(new)
            for fieldname, text in texts[i].push(new, final=reason is not None):
                yield sse(chunk(self.id, name, kind, i,
                                {fieldname: text} if kind == "chat" else text))
            if reason is not None:
                done += 1
                yield sse(chunk(self.id, name, kind, i, {} if kind == "chat" else "", reason,
                                texts[i].matched))
        if done == n and self.params.include_usage:
            yield sse({"id": self.id, "object": "chat.completion.chunk", "model": name,
                       "created": int(time.time()), "choices": [],
                       "usage": self._usage(completion)})
        yield sse("[DONE]")


def serve(cfg: ServeConfig) -> None:
    """Load the model and serve until SIGINT/SIGTERM."""
    import uvicorn

    app = create_app(cfg)
    choice = app.state.server.generator.thread_choice if hasattr(app, "state") else \
        app.app.state.server.generator.thread_choice
    threads = f"; CPU decode: {choice.reason}" if choice is not None else ""
    print(f"distillery serve: {cfg.model} ({cfg.backend}) on http://{cfg.host}:{cfg.port}/v1"
          f"{threads}", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning",
                timeout_graceful_shutdown=cfg.shutdown_timeout_s)
