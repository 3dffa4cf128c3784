"""The static-shape decode step (what the CUDA graph replays) against the normal step and a
greedy loop over full forwards: same tokens, rows finishing at different times included."""

import pytest
import torch

from model.engine import Engine
from tests.model.test_engine import make_model


def naive_greedy(model, prompt, n):
    """Independent reference: argmax of the full (uncached) forward, one token at a time."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


@torch.inference_mode()
def test_static_step_logits_match_the_normal_step():
    torch.set_num_threads(1)
    model = make_model()
    engine = Engine(model, threads=None, cuda_graphs=True)
    cache = engine.new_cache(2, 24)
    ids = torch.tensor([[5, 9, 11, 3], [7, 2, 0, 0]])
    engine.prefill(cache, ids, torch.tensor([4, 2]))
    step_ids, positions = torch.tensor([[13], [17]]), torch.tensor([[4], [2]])
    normal, _ = engine.decode_step(cache, step_ids, positions, 5)
    static = engine.graphed(cache, step_ids, positions)  # attends over all 24 slots, masked
    torch.testing.assert_close(static, normal, rtol=1e-5, atol=1e-5)


def test_cuda_graphs_switch_gives_the_same_greedy_tokens():
    torch.set_num_threads(1)
    model = make_model()
    prompts = [[5, 9, 11, 3, 40], [7, 2], [60, 61, 62]]
    limits = [6, 3, 9]  # rows leave the batch at different steps: the cache is compacted
    runs = {}
    for graphs in (False, True):
        engine = Engine(model, threads=None, cuda_graphs=graphs)
        runs[graphs] = engine.generate(prompts, max_new_tokens=limits, temperature=0.0,
                                       eos_token_ids=()).tokens
    assert runs[True] == runs[False]
    assert runs[True] == [naive_greedy(model, p, n) for p, n in zip(prompts, limits)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_gives_the_same_greedy_tokens_on_gpu():
    model = make_model().cuda().to(torch.bfloat16)
    prompts = [[5, 9, 11, 3, 40], [7, 2], [60, 61, 62]]
    limits = [6, 3, 9]
    plain = Engine(model, threads=None)
    graphed = Engine(model, threads=None, cuda_graphs=True)
    want = plain.generate(prompts, max_new_tokens=limits, temperature=0.0, eos_token_ids=())
    got = graphed.generate(prompts, max_new_tokens=limits, temperature=0.0, eos_token_ids=())
    assert got.tokens == want.tokens
    assert graphed.graphed.captures >= 2  # recaptured after rows left the batch
