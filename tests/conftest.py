"""Test-wide settings: offline Hugging Face libraries and a thread count that fits a 2-core machine."""

import os

import pytest

# Nothing in the tests may reach a hub (DESIGN: no network at run time); these make any attempt fail
# fast instead of hanging on a timeout. Set before any test module imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    import torch
except ImportError:  # the pure parts (verifiers, recipes) are testable without torch
    torch = None
else:
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`):
    decoding a tiny model is per-token overhead, and two OpenMP threads on a shared 2-core machine
    spin against each other and run ~50x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
