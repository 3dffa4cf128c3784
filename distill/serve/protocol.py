"""The OpenAI wire format for `distillery serve`: request checks, response bodies, SSE chunks,
and the incremental text pieces of a stream (detokenizing, stop strings, `<think>` splitting).

Errors are OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from evals.generation import THINK_CLOSE, THINK_OPEN


class RequestError(ValueError):
    """A bad request: answered 400 naming the parameter."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def error_body(message: str, kind: str = "invalid_request_error", param=None, code=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Params:
    """The sampling part of a request, checked."""

    n: int
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def _number(body: dict, name: str, kind, default, low=None, high=None):
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind is int and not float(value).is_integer()):
        raise RequestError(f"{name} must be a{'n integer' if kind is int else ' number'}, "
                           f"got {value!r}", name)
    value = kind(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(f"{name} must be in [{low}, {high}], got {value}", name)
    return value


def parse_params(body: dict, default_max_tokens: int) -> Params:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop) \
            or len(stop) > 4:
        raise RequestError("stop must be a non-empty string or a list of up to 4 of them", "stop")
    options = body.get("stream_options") or {}
    seed = body.get("seed")
    if seed is not None:
        seed = _number(body, "seed", int, None) & 0x7FFFFFFFFFFFFFFF
    return Params(
        n=_number(body, "n", int, 1, 1, 64),
        max_tokens=_number(body, "max_tokens", int,
                           body.get("max_completion_tokens") or default_max_tokens, 1),
        temperature=_number(body, "temperature", float, 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", float, 1.0, 1e-6, 1.0),
        top_k=max(0, _number(body, "top_k", int, 0, -1)),
        seed=seed, stop=tuple(stop), stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")))


def parse_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise RequestError(f"messages[{i}] needs a role of system, user or assistant",
                               "messages")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be text", "messages")
        out.append({"role": m["role"], "content": content})
    return out


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, str | None]:
    """The text before the first stop string (OpenAI leaves the stop string out) and that string."""
    hits = [(i, s) for s in stop if (i := text.find(s)) >= 0]
    if not hits:
        return text, None
    i, s = min(hits)
    return text[:i], s


def split_reasoning(text: str, opened: bool) -> tuple[str | None, str]:
    """(reasoning_content, content) from a completion: the `<think>` block, opened by the prompt
    or by the text itself, and what follows `</think>`. An unclosed block is all reasoning."""
    body = text
    if not opened:
        stripped = text.lstrip()
        if not stripped.startswith(THINK_OPEN):
            return None, text
        body = stripped[len(THINK_OPEN):]
    if THINK_CLOSE not in body:
        return body.strip("\n"), ""
    reasoning, content = body.split(THINK_CLOSE, 1)
    return reasoning.strip("\n"), content.lstrip("\n")


class StreamText:
    """One streamed choice: turns token ids into text deltas, never sending text that a stop
    string or a partial multi-byte character could still change, and (split=True) routes the
    text before `</think>` to reasoning_content."""

    def __init__(self, tokenizer, stop: tuple[str, ...], split: bool, opened: bool):
        self.tokenizer, self.stop, self.split = tokenizer, stop, split
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.tokens: list[int] = []
        self.sent = 0  # characters of the visible text already turned into deltas
        self.mode = "reasoning" if opened else "start"  # start: not yet known whether thinking
        self.pending = ""  # routed text not yet emitted (could be part of a think tag)
        self.matched: str | None = None  # the stop string that ended the text
        self.reasoning_started = False

    def push(self, tokens: list[int], final: bool) -> list[tuple[str, str]]:
        """New tokens in; (field, text) deltas out: field is "content" or "reasoning_content"."""
        self.tokens += tokens
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        text, matched = cut_at_stop(text, self.stop)
        self.matched = matched
        if final or matched:
            end = len(text)
        else:
            end = max(self.sent, len(text) - self.hold)
            while end > self.sent and text[end - 1] == "\ufffd":
                end -= 1
        new, self.sent = text[self.sent:end], max(self.sent, end)
        if not self.split:
            return [("content", new)] if new else []
        return self._route(new, final or matched is not None)

    def _route(self, new: str, final: bool) -> list[tuple[str, str]]:
        """Route text to reasoning_content or content, matching `split_reasoning`: newlines at
        either end of the reasoning and at the start of the answer are dropped."""
        self.pending += new
        out: list[tuple[str, str]] = []
        while True:
            if self.mode == "start":
                stripped = self.pending.lstrip()
                if stripped.startswith(THINK_OPEN):
                    self.pending, self.mode = stripped[len(THINK_OPEN):], "reasoning"
                    continue
                if not final and (not stripped or THINK_OPEN.startswith(stripped)):
                    return out
                self.mode = "content"
            if self.mode == "reasoning":
                if not self.reasoning_started:
                    self.pending = self.pending.lstrip("\n")
                closed = THINK_CLOSE in self.pending
                if closed:
                    piece, after = self.pending.split(THINK_CLOSE, 1)
                    piece, rest = piece.rstrip("\n"), after
                else:
                    keep = 0 if final else _partial_suffix(self.pending, THINK_CLOSE)
                    body = self.pending[:len(self.pending) - keep]
                    piece = body.rstrip("\n")
                    rest = "" if final else self.pending[len(piece):]
                if piece:
                    out.append(("reasoning_content", piece))
                    self.reasoning_started = True
                self.pending = rest
                if not closed:
                    return out
                self.mode = "answer_start"
            if self.mode == "answer_start":
                self.pending = self.pending.lstrip("\n")
                if not self.pending:
                    return out
                self.mode = "content"
            if self.pending:
                out.append(("content", self.pending))
                self.pending = ""
            return out


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-k:]):
            return k
    return 0


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def sse(obj) -> str:
    return "data: " + (obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)) \
        + "\n\n"


def chunk(rid: str, model: str, kind: str, index: int, delta: dict | str,
          finish: str | None = None, stop_reason=None) -> dict:
    """One SSE chunk: chat (`delta` a dict) or text completion (`delta` the text)."""
    if kind == "chat":
        choice = {"index": index, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": delta, "finish_reason": finish}
        obj = "text_completion"
    if finish is not None:
        choice["stop_reason"] = stop_reason
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": [choice]}
