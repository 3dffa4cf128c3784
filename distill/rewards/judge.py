"""Correctness for rewards: our verifiers as the judge, shared by every reward that needs it.

    judge = Judge(think_in_prompt=False)
    judge(completions, references, kinds) -> list[bool | None]

True/False is the verifier's decision on the text after `</think>` (an unclosed think block is
wrong); None means the gold cannot be read (a math reference Math-Verify cannot parse, a code
reference without tests), so the sample is skipped by TRL, not punished (open-r1 #86, #293 gave
such samples 1.0). `kinds[i]` picks the verifier per row ("math", "choice", "code"; the filter's
RL prompt set carries a `kind` column), so one run can mix tasks; code runs in the sandbox.

Verdicts are cached by (kind, completion, reference): accuracy, cosine, Kimi, LCPO and the
repetition gate all ask about the same completions in one step, and a code verdict costs a
sandboxed process. With `workers > 0` the verdicts come from a `verifiers.VerifierPool`, whose
hard per-sample deadline bounds a hostile completion; in-process, verify_math's own soft timeout
(main thread only) and the code sandbox's deadline are the bounds.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Sequence

from verifiers import verify
from verifiers.answers import split_think

JUDGED_KINDS = ("math", "choice", "code")


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a plain string, or a one-message assistant list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return "" if completion is None else str(completion)


def _reference_key(reference: Any) -> str:
    if isinstance(reference, str):
        return reference
    return json.dumps(reference, sort_keys=True, default=str)


def gold_unreadable(reason: str) -> bool:
    """A verdict reason that blames the reference, not the completion."""
    return "reference unparseable" in reason or "code reference" in reason


class Judge:
    """Verifier verdicts with a cache. think_in_prompt: the chat template opened `<think>` in the
    prompt, so a completion without `</think>` is unfinished reasoning (wrong). options: passed to
    every verifier call (e.g. `{"units": "match"}` for math)."""

    def __init__(self, think_in_prompt: bool = False, default_kind: str = "math",
                 workers: int = 0, timeout_s: float = 10.0, cache_size: int = 8192,
                 options: dict | None = None):
        if default_kind not in JUDGED_KINDS:
            raise ValueError(f"default_kind={default_kind!r}; choose one of {list(JUDGED_KINDS)}")
        self.think_in_prompt = think_in_prompt
        self.default_kind = default_kind
        self.options = dict(options or {})
        self.workers, self.timeout_s = workers, timeout_s
        self._pool = None
        self._cache: OrderedDict[tuple, bool | None] = OrderedDict()
        self._cache_size = cache_size

    def __call__(self, completions: Sequence[Any], references: Sequence[Any],
                 kinds: Sequence[str | None] | None = None) -> list[bool | None]:
        texts = [completion_text(c) for c in completions]
        if len(references) != len(texts):
            raise ValueError(f"{len(texts)} completions but {len(references)} references")
        kinds = [k or self.default_kind for k in (kinds or [None] * len(texts))]
        out: list[bool | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        for i, (text, ref, kind) in enumerate(zip(texts, references, kinds)):
            if kind not in JUDGED_KINDS:
                raise ValueError(f"row {i}: kind={kind!r} has no correctness verifier; "
                                 f"use one of {list(JUDGED_KINDS)}")
            key = (kind, text, _reference_key(ref))
            if key in self._cache:
                self._cache.move_to_end(key)
                out[i] = self._cache[key]
            elif not split_think(text, self.think_in_prompt)[2]:
                out[i] = False  # unfinished reasoning has no answer; checked here for every kind
            else:
                todo.setdefault(kind, []).append(i)
        for kind, rows in todo.items():
            verdicts = self._verify(kind, [texts[i] for i in rows], [references[i] for i in rows])
            for i, decision in zip(rows, verdicts):
                out[i] = decision
                self._remember((kind, texts[i], _reference_key(references[i])), decision)
        return out

    def _options(self, kind: str) -> dict:
        opts = dict(self.options)
        if kind == "math":
            opts.setdefault("think_in_prompt", self.think_in_prompt)
        return opts

    def _verify(self, kind: str, texts: list[str], refs: list) -> list[bool | None]:
        if self.workers > 0:
            if self._pool is None:
                from verifiers import VerifierPool
                self._pool = VerifierPool(workers=self.workers, timeout_s=self.timeout_s, progress=False)
            verdicts = self._pool.map(kind, texts, refs, **self._options(kind))
        else:
            verdicts = []
            for text, ref in zip(texts, refs):
                try:
                    verdicts.append(verify(kind, text, ref, **self._options(kind)))
                except ValueError as e:  # the code verifier raises on a reference without tests
                    if "reference" not in str(e):
                        raise
                    verdicts.append(None)
        return [None if v is None or gold_unreadable(v.reason) else bool(v.correct) for v in verdicts]

    def _remember(self, key: tuple, decision: bool | None) -> None:
        self._cache[key] = decision
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
