"""A verifier kind for the filter tests that misbehaves on request: a completion whose answer is
HANG sleeps past any deadline, CRASH kills its worker, RAISE raises; otherwise it is correct when
the answer after </think> equals the reference. Registered at run time (verifiers.api.KINDS)."""

from __future__ import annotations

import os
import time

from verifiers.api import Verdict
from verifiers.format import split_think


def verify_flaky(completion: str, reference, **options) -> Verdict:
    _, answer, _ = split_think(completion)
    if answer == "HANG":
        time.sleep(600)
    if answer == "CRASH":
        os._exit(3)
    if answer == "RAISE":
        raise RuntimeError("flaky verifier raised")
    ok = answer == str(reference)
    return Verdict(ok, float(ok), answer, "ok" if ok else "wrong answer")
