"""The `openai` generation backend: any OpenAI-compatible /v1/chat/completions endpoint (vLLM or
SGLang `serve`, DeepSeek's API, `distillery serve`), over httpx, hardened for long runs.

    gen = OpenAIGenerator("deepseek-reasoner", "https://api.deepseek.com/v1",
                          api_key_env="DEEPSEEK_API_KEY", concurrency=16, max_requests=50_000)
    for index, sample in gen.iter_generate(prompts, seeds, sampling): ...   # as they complete

- Concurrency: at most `concurrency` requests in flight (a thread pool over one httpx client
  whose connection pool has the same size).
- Retries: 408, 429, 5xx, timeouts, dropped connections and unparseable bodies are retried up to
  `max_retries` times with exponential backoff and full jitter (a uniform draw in
  [0, min(max_backoff_s, backoff_s * 2**attempt)], the AWS "full jitter" scheme); a `Retry-After`
  header (seconds or an HTTP date) is a floor on the wait. Other 4xx answers fail at once.
- Budget: `max_requests` caps the HTTP requests of this generator's life, retries included;
  when it is spent every further sample fails with cause "budget" without a request.
- Failures: with `on_error="raise"` (eval) the first sample that fails raises `RequestFailed`;
  with "mark" (generate) it comes back as a Sample with finish_reason "error" and
  `error = "<cause>: <detail>"`, so one bad request never loses the rest.
- The key: read from the environment variable named by `api_key_env` and only ever put in the
  Authorization header; error texts are scrubbed of it, and it is never stored on the object.
- Reasoning: a separate `reasoning_content` (DeepSeek API, vLLM/SGLang reasoning parsers,
  `distillery serve --split-reasoning`) is put back in front as `<think>\\n...\\n</think>\\n\\n`
  (without the close tag when the token limit cut it before any answer). Without one, a text
  holding `</think>` but no `<think>` came from a template that opened the block in the prompt
  (think_opened); a text with neither tag cannot be told from a non-thinking answer.
  A `stop_reason` naming one of our stop strings (vLLM, `distillery serve`) is appended back, so
  the text ends with its stop string like the local backends' does.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from evals.generation import THINK_CLOSE, THINK_OPEN, Generator, Sample

RETRY_STATUS = {408, 409, 425, 429}  # plus every 5xx


class RequestFailed(RuntimeError):
    """A request that failed for good: `cause` is one of http_429, http_5xx, http_4xx, timeout,
    connection, bad_response, budget."""

    def __init__(self, cause: str, detail: str):
        super().__init__(f"{cause}: {detail}")
        self.cause, self.detail = cause, detail


class RequestBudget:
    """A thread-safe count of the requests a run may still send (None: unlimited)."""

    def __init__(self, max_requests: int | None):
        if max_requests is not None and max_requests < 1:
            raise ValueError(f"max_requests must be >= 1 (or unset), got {max_requests}")
        self.limit, self.used = max_requests, 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                raise RequestFailed("budget", f"the request budget of {self.limit} is spent")
            self.used += 1


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header as seconds from now: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, backoff_s: float, max_backoff_s: float,
                  retry_after: float | None, rng: random.Random) -> float:
    """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
    delay = rng.uniform(0.0, min(max_backoff_s, backoff_s * 2 ** attempt))
    return delay if retry_after is None else max(delay, retry_after)


def _clean_text(value) -> str:
    """Text a row can hold: a JSON `\\ud800` escape decodes to a lone surrogate, which no UTF-8
    file can store; it becomes "?" instead of crashing the writer."""
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value.encode("utf-8", errors="replace").decode("utf-8")


class OpenAIGenerator(Generator):
    """POST {base_url}/chat/completions, one request per sample (its seed passed through).
    Options (the recipe's `options`): concurrency, timeout_s, max_retries, backoff_s,
    max_backoff_s, max_requests, on_error, extra_body (merged into every request body),
    prompt_opens_think (True: the endpoint's chat template opens `<think>`, as R1's does, so
    a reply without reasoning_content is all reasoning until `</think>`; None: guess)."""

    backend = "openai"

    def __init__(self, model: str, base_url: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 enable_thinking: bool = True, concurrency: int = 8, timeout_s: float = 3600.0,
                 max_retries: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 max_requests: int | None = None, on_error: str = "raise",
                 extra_body: dict | None = None, prompt_opens_think: bool | None = None):
        import httpx

        if concurrency < 1 or timeout_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise ValueError("openai backend: need concurrency >= 1, timeout_s > 0, "
                             "max_retries >= 0, backoff_s >= 0")
        if on_error not in ("raise", "mark"):
            raise ValueError(f"openai backend: on_error must be 'raise' or 'mark', got {on_error!r}")
        self.model, self.base_url = model, base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        key = os.environ.get(api_key_env) if api_key_env else None
        self._scrub = [key] if key else []
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.Client(headers=headers, timeout=timeout_s, limits=limits)
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.budget = RequestBudget(max_requests)
        self.on_error, self.extra_body = on_error, dict(extra_body or {})
        self.prompt_opens_think = prompt_opens_think
        self.retries = 0  # retried attempts over this generator's life (for summaries)
        self._rng = random.Random()
        if not enable_thinking:
            from model.config import warn_ignored
            warn_ignored("enable_thinking: false", "an OpenAI endpoint applies its own template")

    # -- the run -------------------------------------------------------------------------------
    def iter_generate(self, prompts, seeds, sampling, stop=()):
        """(index, Sample) pairs as requests complete, at most `concurrency` in flight."""
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            futures = {pool.submit(self._sample, p, s, sampling, tuple(stop)): i
                       for i, (p, s) in enumerate(zip(prompts, seeds))}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:  # all done, or the caller stopped early: drop what has not started
            pool.shutdown(wait=False, cancel_futures=True)

    def _generate_flat(self, prompts, seeds, sampling, stop):
        out: list[Sample | None] = [None] * len(prompts)
        for i, sample in self.iter_generate(prompts, seeds, sampling, stop):
            out[i] = sample
        return out

    def _sample(self, prompt, seed, sampling, stop) -> Sample:
        try:
            return self._one(prompt, seed, sampling, stop)
        except RequestFailed as e:
            if self.on_error == "raise":
                raise RuntimeError(f"{self.url} ({self.model}): {e}") from None
            return Sample("", "error", 0, 0, error=str(e))

    def _one(self, prompt, seed, sampling, stop) -> Sample:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        body = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens, "seed": seed,
                "n": 1, **self.extra_body}
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k  # vLLM/SGLang servers accept it; OpenAI ignores it
        if stop:
            body["stop"] = list(stop)
        data = self._post(self.url, body)
        try:
            return self._parse(data, stop)
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise RequestFailed("bad_response", f"unexpected response shape ({e!r}): "
                                f"{str(data)[:200]}") from None

    def _parse(self, data: dict, stop) -> Sample:
        choice, usage = data["choices"][0], data.get("usage") or {}
        message = choice["message"]
        text = _clean_text(message.get("content") or "")
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        reasoning = _clean_text(message.get("reasoning_content") or message.get("reasoning") or "")
        opened = False
        if reasoning:  # a reasoning cut by the token limit before any answer never closed
            closed = bool(text) or finish != "length"
            text = f"{THINK_OPEN}\n{reasoning}" + (f"\n{THINK_CLOSE}\n\n{text}" if closed else "")
        else:  # an R1 template opened `<think>` in the prompt: the text has only the close tag
            opened = self.prompt_opens_think if self.prompt_opens_think is not None else \
                THINK_CLOSE in text and THINK_OPEN not in text
        stop_reason = choice.get("stop_reason")
        if isinstance(stop_reason, str) and stop_reason in stop and not text.endswith(stop_reason):
            text += stop_reason
        details = usage.get("completion_tokens_details") or {}
        return Sample(text, finish, int(usage.get("prompt_tokens") or 0),
                      int(usage.get("completion_tokens") or 0),
                      reasoning_tokens=details.get("reasoning_tokens"), think_opened=opened)

    # -- HTTP with retries ---------------------------------------------------------------------
    def _post(self, url: str, body: dict | None, retries: int | None = None) -> dict:
        """POST `body` (GET when None) with retries; the parsed JSON object, or RequestFailed."""
        import httpx

        retries = self.max_retries if retries is None else retries
        failure = RequestFailed("connection", "no attempt made")
        for attempt in range(retries + 1):
            if attempt:
                self.retries += 1
            self.budget.take()
            retry_after = None
            try:
                response = (self.client.get(url) if body is None
                            else self.client.post(url, json=body))
            except httpx.TimeoutException as e:
                failure = RequestFailed("timeout", f"{type(e).__name__}: {e}")
            except httpx.TransportError as e:
                failure = RequestFailed("connection", f"{type(e).__name__}: {e}")
            else:
                status = response.status_code
                if status == 200:
                    try:
                        data = response.json()
                    except ValueError:
                        failure = RequestFailed("bad_response",
                                                f"not JSON: {self._clean(response.text[:200])!r}")
                    else:
                        if isinstance(data, dict):
                            return data
                        failure = RequestFailed("bad_response", f"not a JSON object: {data!r:.200}")
                else:
                    cause = "http_429" if status == 429 else \
                        "http_5xx" if status >= 500 else "http_4xx"
                    failure = RequestFailed(cause, f"HTTP {status}: "
                                            f"{self._clean(response.text[:300])}")
                    if status < 500 and status not in RETRY_STATUS:
                        raise failure
                    retry_after = retry_after_s(response.headers.get("retry-after"))
            if attempt < retries:
                time.sleep(backoff_delay(attempt, self.backoff_s, self.max_backoff_s,
                                         retry_after, self._rng))
        raise failure

    def _clean(self, text: str) -> str:
        for secret in self._scrub:
            text = text.replace(secret, "***")
        return text

    def check(self) -> list[str] | None:
        """Ask the endpoint which models it serves (GET /models), before any work: an unreachable
        endpoint or a model it does not serve is a ValueError. None when it has no /models."""
        try:
            data = self._post(self.base_url + "/models", None, retries=min(2, self.max_retries))
        except RequestFailed as e:
            if e.cause == "http_4xx" and "HTTP 404" in e.detail:
                return None
            raise ValueError(f"openai endpoint {self.base_url}: {e}") from None
        names = [m.get("id") for m in data.get("data") or [] if isinstance(m, dict)]
        if names and self.model not in names:
            raise ValueError(f"openai endpoint {self.base_url} serves {names}, not {self.model!r}"
                             " (teacher.path is the served model name)")
        return names

    def close(self) -> None:
        self.client.close()
