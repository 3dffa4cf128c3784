"""Generation backends behind one interface, shared by evaluation and teacher generation.

    gen = make_generator(ModelSpec(name, path, backend), enable_thinking=True)
    samples = gen.generate(prompts, n, sampling, seeds=None, stop=())   # -> list[list[Sample]]
    for i, sample in gen.iter_generate(flat_prompts, flat_seeds, sampling): ...   # as they finish

A prompt is text (fed as is) or chat messages (rendered with the tokenizer's chat template, with
`enable_thinking`; `force_think` also appends `<think>\n` when the template does not open the
reasoning block itself, as DeepSeek-R1's usage notes ask). Backends: "engine"
(model.engine.Engine over our checkpoints, batched, optional MTP speculation), "transformers"
(AutoModelForCausalLM.generate, any local HF model, left-padded batches), "vllm" (lazy import,
thin: offline `LLM`, parallelism options passed through), "openai" (evals/openai_client.py: any
OpenAI-compatible endpoint, with concurrency, retries and a request budget). A local model path
that does not exist is an error when the generator is made, before anything is generated.

Seeds: sample j of prompt i uses seeds[i][j] (default: `sample_seed(sampling.seed, i, j)`); the
eval runner and `distillery generate` pass seeds derived from (problem id, sample index), so a
resumed run that regenerates only some samples draws the tokens a full run would have drawn. The
engine gives every row of a batch its own seeded generator (exact at any batch_size, up to the
float rounding of batched matmuls); transformers seeds each batch with its first sample's seed
(exact with batch_size 1); vLLM and OpenAI-compatible servers take a seed per request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from evals.config import ModelSpec, SamplingParams

Prompt = str | list[dict]
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Samples per generation call (times batch_size) in the eval and generate loops: rows are written
# after each call, so this bounds what a crash can lose for the batch-at-once backends.
CHUNK = {"engine": 16, "transformers": 16, "vllm": 1024, "openai": 256}


@dataclass
class Sample:
    """One generation. text: the new text only (special tokens removed, cut after a stop string).
    finish_reason: "stop" (EOS or a stop string) or "length". reasoning_tokens: set by a backend
    (or budget forcing) that knows it exactly, else None. token_ids: the new token ids where the
    backend has them. think_opened: the prompt itself ended in an open `<think>`. error: set (with
    finish_reason "error") when a backend that marks failures could not produce the sample."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None = None
    token_ids: list[int] | None = None
    think_opened: bool = False
    error: str | None = None


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
    thread_choice = None  # model.threads.ThreadChoice where a CPU backend applied the rule

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

    def iter_generate(self, prompts: list[Prompt], seeds: list[int], sampling: SamplingParams,
                      stop=()):
        """One sample per (prompt, seed), yielded as (index, Sample) as soon as each is done:
        a batch at a time for local backends, one request at a time for served ones, so a caller
        can write every finished sample before the next starts."""
        step = max(1, getattr(self, "batch_size", 1))
        for start in range(0, len(prompts), step):
            outs = self._generate_flat(prompts[start:start + step], seeds[start:start + step],
                                       sampling, tuple(stop))
            yield from enumerate(outs, start)

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

    def __init__(self, path, *, enable_thinking=True, device=None, dtype=None, batch_size=1,
                 force_think=False):
        from transformers import AutoTokenizer

        self.path = check_model_path(path)
        self.enable_thinking, self.batch_size = enable_thinking, batch_size
        self.force_think = force_think
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
        text = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=False, enable_thinking=self.enable_thinking)
        if self.force_think and not opens_thinking(text):
            text += THINK_OPEN + "\n"
        return text

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
            outs = self._run_batch(ids, seeds[start:start + self.batch_size], sampling, stop)
            for text, prompt_ids, (tokens, reason, new_text) in zip(batch, ids, outs):
                samples.append(Sample(new_text, reason, len(prompt_ids), len(tokens),
                                      token_ids=list(tokens), think_opened=opens_thinking(text)))
        return samples

    def _run_batch(self, ids, seeds, sampling, stop) -> list[tuple[list[int], str, str]]:
        """(new token ids, finish_reason, new text) per sequence; seeds: one per sequence."""
        raise NotImplementedError


class EngineGenerator(_LocalGenerator):
    """The in-repo engine (static MLA latent cache) over one of our checkpoints; every row of a
    batch draws from its own seeded generator. use_mtp: MTP self-speculative decoding (the
    output distribution is plain decoding's; faster when the MTP module's drafts are accepted)."""

    backend = "engine"

    def __init__(self, path, *, use_mtp: bool = False, **kwargs):
        super().__init__(path, **kwargs)
        from model import Transformer
        from model.engine import Engine

        model = Transformer.from_pretrained(self.path, dtype=self.dtype, device=self.device)
        if use_mtp and not model.config.num_nextn_predict_layers:
            raise ValueError(f"{self.path}: use_mtp needs a checkpoint with MTP modules "
                             "(num_nextn_predict_layers > 0)")
        self.engine = Engine(model.eval(), self.tokenizer, batch_size=self.batch_size)
        self.thread_choice = self.engine.thread_choice
        self.use_mtp = use_mtp

    def _run_batch(self, ids, seeds, sampling, stop):
        result = self.engine.generate(
            ids, max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, top_k=sampling.top_k, eos_token_ids=None, stop_strings=stop,
            seed=list(seeds), use_mtp=self.use_mtp)
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
        if self.device == "cpu":
            from model.threads import apply_thread_rule

            active = sum(p.numel() for p in self.model.parameters())  # dense upper bound
            self.thread_choice = apply_thread_rule(2.0 * active, where="transformers decode")
        self.model.eval()
        self.tokenizer.padding_side = "left"
        self.eos_ids = _as_list(self.model.generation_config.eos_token_id) or \
            _as_list(self.tokenizer.eos_token_id)

    def _run_batch(self, ids, seeds, sampling, stop):
        import torch

        seed = seeds[0]  # HF generate draws from the global RNG: one seed per batch
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
    """vLLM's offline `LLM.generate`. `options` go to `LLM(...)` (tensor_parallel_size,
    data_parallel_size, gpu_memory_utilization, max_model_len, ...), except `n_per_request`:
    True sends the n samples of a prompt as one request (`SamplingParams(n=...)`, seeded with
    the first sample's seed: one prefill, but a resumed run redraws the group); the default sends
    one request per sample with its own seed (vLLM's prefix cache shares the prompt anyway)."""

    backend = "vllm"

    def __init__(self, path, *, options=None, **kwargs):
        try:
            import vllm
        except ImportError as e:
            raise ImportError("backend 'vllm' needs vLLM installed (pip install "
                              "'r1-distillery[vllm]'); use backend engine or transformers "
                              f"without it ({e})") from e
        super().__init__(path, **kwargs)
        options = dict(options or {})
        self.n_per_request = bool(options.pop("n_per_request", False))
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(self.path), dtype=self.dtype, **options)

    def _params(self, n, seed, sampling, stop):
        return self._vllm.SamplingParams(
            n=n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1, max_tokens=sampling.max_new_tokens,
            seed=seed, stop=list(stop) or None, include_stop_str_in_output=True)

    def _generate_flat(self, prompts, seeds, sampling, stop):
        out: list[Sample | None] = [None] * len(prompts)
        for i, sample in self.iter_generate(prompts, seeds, sampling, stop):
            out[i] = sample
        return out

    def iter_generate(self, prompts, seeds, sampling, stop=()):
        """Everything in one `LLM.generate` (vLLM schedules best with all of it; callers chunk).
        With n_per_request, a run of equal consecutive prompts is one request with n = its
        length, seeded by its first seed."""
        groups: list[list[int]] = []  # [first index, count]
        for i, prompt in enumerate(prompts):
            if self.n_per_request and groups and prompts[groups[-1][0]] == prompt:
                groups[-1][1] += 1
            else:
                groups.append([i, 1])
        texts = [self.render(prompts[first]) for first, _ in groups]
        outputs = self.llm.generate(
            [{"prompt_token_ids": self.encode(t)} for t in texts],
            [self._params(count, seeds[first], sampling, tuple(stop)) for first, count in groups],
            use_tqdm=True)
        for (first, _), text, out in zip(groups, texts, outputs):
            for k, o in enumerate(out.outputs):
                yield first + k, self._sample(text, out, o)

    @staticmethod
    def _sample(text, out, o) -> Sample:
        return Sample(o.text, "length" if o.finish_reason == "length" else "stop",
                      len(out.prompt_token_ids), len(o.token_ids), token_ids=list(o.token_ids),
                      think_opened=opens_thinking(text))

    def close(self) -> None:
        self.llm = None
        _free_cuda()


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


LOCAL_OPTIONS = {"engine": {"use_mtp"}, "transformers": set()}


def make_generator(spec: ModelSpec, *, enable_thinking: bool = True, force_think: bool = False,
                   on_error: str = "raise") -> Generator:
    """Load the model `spec` names (errors for a missing path come before any loading).
    on_error: the openai backend's failure mode ("raise", or "mark" failed samples)."""
    check_backend(spec, f"model {spec.name!r}")
    options = dict(spec.options)
    if spec.backend == "openai":
        from evals.openai_client import OpenAIGenerator

        # force_think does not apply: the endpoint renders its own chat template (R1 servers
        # open `<think>` themselves)
        try:
            return OpenAIGenerator(spec.path, spec.base_url, api_key_env=spec.api_key_env,
                                   enable_thinking=enable_thinking, on_error=on_error, **options)
        except TypeError as e:
            raise ValueError(f"model {spec.name!r}: bad openai option: {e}") from None
    local = dict(enable_thinking=enable_thinking, device=spec.device, dtype=spec.dtype,
                 batch_size=spec.batch_size, force_think=force_think)
    allowed = LOCAL_OPTIONS.get(spec.backend)
    if allowed is not None and set(options) - allowed:
        raise ValueError(f"model {spec.name!r}: options {sorted(set(options) - allowed)} are not "
                         f"options of backend {spec.backend} (allowed: {sorted(allowed)})")
    if spec.backend == "engine":
        return EngineGenerator(spec.path, **options, **local)
    if spec.backend == "transformers":
        return TransformersGenerator(spec.path, **local)
    if spec.backend == "vllm":
        return VLLMGenerator(spec.path, options=options, **local)
    raise ValueError(f"model {spec.name!r}: unknown backend {spec.backend!r}")


def reasoning_tokens(generator: Generator, sample: Sample, reasoning: str) -> int | None:
    """Tokens spent thinking: the backend's own count, else the position of `</think>` in the
    token ids (all of them when the block never closed), else the reasoning text re-tokenized."""
    if sample.reasoning_tokens is not None:
        return sample.reasoning_tokens
    close_id = getattr(generator, "think_close_id", None)
    if sample.token_ids is not None and close_id is not None:
        if close_id in sample.token_ids:
            return sample.token_ids.index(close_id)
        opened = sample.think_opened or sample.text.lstrip().startswith(THINK_OPEN)
        return len(sample.token_ids) if opened else 0
    return generator.count_tokens(reasoning) if reasoning else 0


def with_max_tokens(sampling: SamplingParams, max_new_tokens: int) -> SamplingParams:
    return replace(sampling, max_new_tokens=max_new_tokens)


def __getattr__(name):  # the openai backend moved to evals/openai_client.py; keep the old name
    if name == "OpenAIGenerator":
        from evals.openai_client import OpenAIGenerator

        return OpenAIGenerator
    raise AttributeError(name)
