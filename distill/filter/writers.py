"""The shared atomic writers (model.checkpoint.atomic_write, evals.report's JSON/text helpers),
imported on first call: importing the `model` package loads torch and transformers (~20 s on a
busy 2-core machine), which a filter run needs only when it writes its final files, not while it
streams verdicts (a resumed or killed run should not wait for it)."""

from __future__ import annotations


def atomic_write(path, write) -> None:
    from model.checkpoint import atomic_write as _atomic_write

    _atomic_write(path, write)


def write_json_atomic(path, obj) -> None:
    from evals.report import write_json_atomic as _write

    _write(path, obj)


def write_text_atomic(path, text: str) -> None:
    from evals.report import write_text_atomic as _write

    _write(path, text)
