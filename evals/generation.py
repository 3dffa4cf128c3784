"""Generation backends behind one interface, for evaluation (or anything sampling k per prompt).

    gen = make_generator(ModelSpec(name, path, backend), enable_thinking=True)
    samples = gen.generate(prompts, n, sampling, seeds=None, stop=())   # -> list[list[Sample]]

A prompt is text (fed as is) or chat messages (rendered with the tokenizer's chat template, with
`enable_thinking`). Backends: "engine" (model.engine.Engine over our checkpoints), "transformers"
(AutoModelForCausalLM.generate, any local HF model), "vllm" (lazy import, thin), "openai" (an
OpenAI-compatible /v1/chat/completions endpoint over httpx, thin). A local model path that does
not exist is an error when the generator is made, before anything is generated.

Seeds: sample j of prompt i uses seeds[i][j] (default: `sample_seed(sampling.seed, i, j)`); the
eval runner passes seeds derived from (benchmark, problem id, sample index), so a resumed run
that regenerates only some samples draws the tokens a full run would have drawn. The engine and
transformers backends seed each call (exact with batch_size 1; a batch takes its first sample's
seed); vLLM and OpenAI-compatible servers take a seed per request.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from evals.config import ModelSpec, SamplingParams

Prompt = str | list[dict]
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass
class Sample:
    """One generation. text: the new text only (special tokens removed, cut after a stop string).
    finish_reason: "stop" (EOS or a stop string) or "length". reasoning_tokens: set by a backend
    (or budget forcing) that knows it exactly, else None. token_ids: the new token ids where the
    backend has them. think_opened: the prompt itself ended in an open `<think>`."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None = None
    token_ids: list[int] | None = None
    think_opened: bool = False


def sample_seed(*parts) -> int:
    """A stable 31-bit seed from any JSON-able parts (not Python's salted hash())."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def opens_thinking(prompt_text: str) -> bool:
    """The rendered prompt ends inside an open reasoning block (R1 template with `<think>\\n`)."""
    return prompt_text.rstrip().endswith(THINK_OPEN)


class Generator:
    """Base: flattens (prompt, sample) pairs, seeds them, and regroups the results."""

    backend = "base"
    tokenizer = None

    def render(self, prompt: Prompt) -> str:
        """The prompt text the model sees (chat template applied to messages)."""
        if isinstance(prompt, str):
            return prompt
        return json.dumps(prompt, ensure_ascii=False)

    def count_tokens(self, text: str) -> int | None:
        if self.tokenizer is None:
            return None
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def generate(self, prompts: list[Prompt], n: int, sampling: SamplingParams, *,
                 seeds: list[list[int]] | None = None, stop=()) -> list[list[Sample]]:
        """n samples for each prompt, as a list per prompt in prompt order."""
        if n < 1:
            raise ValueError(f"generate: n must be >= 1, got {n}")
        if seeds is None:
            seeds = [[sample_seed(sampling.seed, i, j) for j in range(n)]
                     for i in range(len(prompts))]
        if len(seeds) != len(prompts) or any(len(s) != n for s in seeds):
            raise ValueError("generate: seeds must hold n seeds for every prompt")
        flat_prompts = [p for p in prompts for _ in range(n)]
        flat_seeds = [s for row in seeds for s in row]
        flat = self._generate_flat(flat_prompts, flat_seeds, sampling, tuple(stop)) \
            if prompts else []
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _generate_flat(self, prompts, seeds, sampling, stop) -> list[Sample]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (and GPU memory) now rather than at garbage collection."""


# -- local models (engine, transformers) --------------------------------------------------------

def check_model_path(path: str | Path, where: str = "model") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{where}: model path {path} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{where}: {path} has no config.json (not an HF checkpoint)")
    return path


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


class _LocalGenerator(Generator):
    """Tokenizer-side work shared by the engine and transformers backends."""

    def __init__(self, path, *, enable_thinking=True, device=None, dtype=None, batch_size=1):
        from transformers import AutoTokenizer

        self.path = check_model_path(path)
        self.enable_thinking, self.batch_size = enable_thinking, batch_size
        self.device, self.dtype = _device(device), dtype or "auto"
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        close_ids = self.tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
        self.think_close_id = close_ids[0] if len(close_ids) == 1 else None

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.path}: the tokenizer has no chat template; set "
                             "chat_template: false to feed plain prompts")
        return self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=False, enable_thinking=self.enable_thinking)

    def encode(self, text: str) -> list[int]:
        """Token ids; no second BOS when the text (a rendered chat prompt) starts with one."""
        bos = self.tokenizer.bos_token
        return self.tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos)))

    def _generate_flat(self, prompts, seeds, sampling, stop) -> list[Sample]:
        texts = [self.render(p) for p in prompts]
        samples: list[Sample] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            ids = [self.encode(t) for t in batch]
            outs = self._run_batch(ids, seeds[start], sampling, stop)
            for text, prompt_ids, (tokens, reason, new_text) in zip(batch, ids, outs):
                samples.append(Sample(new_text, reason, len(prompt_ids), len(tokens),
                                      token_ids=list(tokens), think_opened=opens_thinking(text)))
        return samples

    def _run_batch(self, ids, seed, sampling, stop) -> list[tuple[list[int], str, str]]:
        """(new token ids, finish_reason, new text) per sequence."""
        raise NotImplementedError


class EngineGenerator(_LocalGenerator):
    """The in-repo engine (static MLA latent cache) over one of our checkpoints."""

    backend = "engine"

    def __init__(self, path, **kwargs):
        super().__init__(path, **kwargs)
        from model import Transformer
        from model.engine import Engine

        model = Transformer.from_pretrained(self.path, dtype=self.dtype, device=self.device)
        self.engine = Engine(model.eval(), self.tokenizer)

    def _run_batch(self, ids, seed, sampling, stop):
        result = self.engine.generate(
            ids, max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, top_k=sampling.top_k, eos_token_ids=None, stop_strings=stop,
            seed=seed, use_mtp=False)
        return list(zip(result.tokens, result.finish_reason, result.text))

    def close(self) -> None:
        self.engine = None
        _free_cuda()


class TransformersGenerator(_LocalGenerator):
    """AutoModelForCausalLM + `generate` (left-padded batches, global torch seed per batch)."""

    backend = "transformers"

    def __init__(self, path, **kwargs):
        super().__init__(path, **kwargs)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype)
        self.model = model.to(self.device)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        self.eos_ids = _as_list(self.model.generation_config.eos_token_id) or \
            _as_list(self.tokenizer.eos_token_id)

    def _run_batch(self, ids, seed, sampling, stop):
        import torch

        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else self.eos_ids[0]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids],
                            device=self.device)
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=pad,
                      eos_token_id=self.eos_ids)
        if sampling.temperature > 0:  # top_k=0 switches HF's default top-k of 50 off
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=sampling.top_k)
        else:
            kwargs.update(do_sample=False)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        return [self._finish(row[width:].tolist(), stop, sampling.max_new_tokens, pad)
                for row in out]

    def _finish(self, tokens, stop, limit, pad):
        """Cut at the first EOS, or drop the padding that follows a row finished by a stop
        string (transformers pads finished rows up to the batch's length); then cut the text
        after the first stop string."""
        end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
        reason = "length"
        if end is not None:
            tokens, reason = tokens[:end + 1], "stop"
        else:
            while tokens and tokens[-1] == pad:
                tokens = tokens[:-1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [text.find(s) + len(s) for s in stop if s in text]
        if cuts:
            text, reason = text[:min(cuts)], "stop"
        elif end is None and len(tokens) < limit:
            reason = "stop"  # ended early without EOS: a stopping criterion of the model's own
        return tokens, reason, text

    def close(self) -> None:
        self.model = None
        _free_cuda()


def _as_list(x) -> list[int]:
    return [] if x is None else [x] if isinstance(x, int) else list(x)


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- served models (vllm, openai) ---------------------------------------------------------------

class VLLMGenerator(_LocalGenerator):
    """vLLM's offline `LLM.generate` with a per-request seed; `options` go to `LLM(...)`."""

    backend = "vllm"

    def __init__(self, path, *, options=None, **kwargs):
        try:
            import vllm
        except ImportError as e:
            raise ImportError("backend 'vllm' needs vLLM installed (pip install "
                              "'r1-distillery[vllm]'); use backend engine or transformers "
                              f"without it ({e})") from e
        super().__init__(path, **kwargs)
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(self.path), dtype=self.dtype, **(options or {}))

    def _generate_flat(self, prompts, seeds, sampling, stop):
        texts = [self.render(p) for p in prompts]
        params = [self._vllm.SamplingParams(
            n=1, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1, max_tokens=sampling.max_new_tokens,
            seed=seed, stop=list(stop) or None, include_stop_str_in_output=True) for seed in seeds]
        requests = [{"prompt_token_ids": self.encode(t)} for t in texts]
        outputs = self.llm.generate(requests, params, use_tqdm=True)
        samples = []
        for text, out in zip(texts, outputs):
            o = out.outputs[0]
            samples.append(Sample(o.text, "length" if o.finish_reason == "length" else "stop",
                                  len(out.prompt_token_ids), len(o.token_ids),
                                  token_ids=list(o.token_ids), think_opened=opens_thinking(text)))
        return samples

    def close(self) -> None:
        self.llm = None
        _free_cuda()


class OpenAIGenerator(Generator):
    """POST {base_url}/chat/completions, one request per sample (seed passed through), a thread
    pool of `concurrency` requests, 3 tries on connection errors and 429/5xx. A separate
    `reasoning_content` (DeepSeek API, vLLM reasoning parsers) is put back as a think block."""

    backend = "openai"

    def __init__(self, model: str, base_url: str, *, api_key_env="OPENAI_API_KEY",
                 enable_thinking=True, concurrency: int = 8, timeout_s: float = 3600.0):
        import httpx

        self.model, self.url = model, base_url.rstrip("/") + "/chat/completions"
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(headers=headers, timeout=timeout_s)
        self.concurrency = concurrency
        if not enable_thinking:
            from model.config import warn_ignored
            warn_ignored("enable_thinking: false", "an OpenAI endpoint applies its own template")

    def _generate_flat(self, prompts, seeds, sampling, stop):
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda a: self._one(*a, sampling, stop), zip(prompts, seeds)))

    def _one(self, prompt, seed, sampling, stop) -> Sample:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        body = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens, "seed": seed,
                "n": 1}
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k  # vLLM/SGLang servers accept it; OpenAI ignores it
        if stop:
            body["stop"] = list(stop)
        data = self._post(body)
        choice, usage = data["choices"][0], data.get("usage") or {}
        message = choice.get("message") or {}
        text = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            text = f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{text}"
        details = usage.get("completion_tokens_details") or {}
        return Sample(text, "length" if choice.get("finish_reason") == "length" else "stop",
                      usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                      reasoning_tokens=details.get("reasoning_tokens"))

    def _post(self, body) -> dict:
        import httpx

        for attempt in range(3):
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if response.status_code == 200:
                    return response.json()
                error = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code != 429 and response.status_code < 500:
                    break
            time.sleep(2 ** attempt)
        raise RuntimeError(f"{self.url} ({self.model}): {error}")

    def close(self) -> None:
        self.client.close()


# -- construction -------------------------------------------------------------------------------

def check_backend(spec: ModelSpec, where: str = "model") -> None:
    """Everything about a model that can be checked without loading it: the path, vLLM present."""
    if spec.backend == "openai":
        return  # ModelSpec already requires base_url; the endpoint is only known by asking it
    check_model_path(spec.path, where)
    if spec.backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ValueError(f"{where}: backend vllm needs vLLM installed "
                             "(pip install 'r1-distillery[vllm]'), or use backend engine")


def make_generator(spec: ModelSpec, *, enable_thinking: bool = True) -> Generator:
    """Load the model `spec` names (errors for a missing path come before any loading)."""
    check_backend(spec, f"model {spec.name!r}")
    options = dict(spec.options)
    if spec.backend == "openai":
        return OpenAIGenerator(spec.path, spec.base_url, api_key_env=spec.api_key_env,
                               enable_thinking=enable_thinking, **options)
    local = dict(enable_thinking=enable_thinking, device=spec.device, dtype=spec.dtype,
                 batch_size=spec.batch_size)
    if options and spec.backend != "vllm":
        raise ValueError(f"model {spec.name!r}: options are for the vllm and openai backends, "
                         f"got {sorted(options)} with backend {spec.backend}")
    if spec.backend == "engine":
        return EngineGenerator(spec.path, **local)
    if spec.backend == "transformers":
        return TransformersGenerator(spec.path, **local)
    if spec.backend == "vllm":
        return VLLMGenerator(spec.path, options=options, **local)
    raise ValueError(f"model {spec.name!r}: unknown backend {spec.backend!r}")


def with_max_tokens(sampling: SamplingParams, max_new_tokens: int) -> SamplingParams:
    return replace(sampling, max_new_tokens=max_new_tokens)
