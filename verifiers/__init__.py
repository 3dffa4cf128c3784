"""Pure scoring of model outputs: math, multiple choice, code (sandboxed), format/hygiene.

    verify(kind, completion, reference, **options) -> Verdict(correct, score, extracted, reason)
    VerifierPool(workers=N, timeout_s=T).map(kind, completions, references, **options)

No torch, no model: everything here is picklable and runs in worker processes.
"""

from verifiers.api import KINDS, Verdict, verify

__all__ = ["KINDS", "Verdict", "verify", "VerifierPool"]


def __getattr__(name):  # the pool pulls in multiprocessing machinery; import it on first use
    if name == "VerifierPool":
        from verifiers.pool import VerifierPool
        return VerifierPool
    raise AttributeError(name)
