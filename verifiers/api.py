"""The verifier contract shared by filter, rewards and evaluation.

Each kind lives in its own module and exposes `verify_<kind>(completion, reference, **options)
-> Verdict`. `verify` dispatches by kind and turns bad input (None, non-strings, binary junk)
into a verdict with a reason instead of an exception.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """correct: the pass/fail decision. score: in [0, 1] (fraction of tests for code, else 0/1).
    extracted: the answer text the verifier judged (None if nothing was found).
    reason: why, in a few words ("ok", "no answer found", "unclosed <think>", "timeout", ...)."""

    correct: bool
    score: float
    extracted: str | None
    reason: str

    @classmethod
    def fail(cls, reason: str, extracted: str | None = None) -> "Verdict":
        return cls(False, 0.0, extracted, reason)


# kind -> (module, function); modules are imported on first use.
KINDS = {
    "math": ("verifiers.math_verifier", "verify_math"),
    "choice": ("verifiers.choice", "verify_choice"),
    "code": ("verifiers.code", "verify_code"),
    "format": ("verifiers.format", "verify_format"),
}


def verify(kind: str, completion, reference, **options) -> Verdict:
    if kind not in KINDS:
        raise ValueError(f"unknown verifier kind {kind!r}; choose one of {sorted(KINDS)}")
    if completion is None:
        return Verdict.fail("completion is None")
    if isinstance(completion, bytes):
        try:
            completion = completion.decode("utf-8")
        except UnicodeDecodeError:
            return Verdict.fail("completion is not UTF-8 text")
    if not isinstance(completion, str):
        return Verdict.fail(f"completion is {type(completion).__name__}, not text")
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)(completion, reference, **options)
