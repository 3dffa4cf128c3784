"""The engine's per-row options (what a server batching unrelated requests needs): a batch where
each row has its own seed, token limit and stop strings must give every row exactly what it
gives alone, and the token callback must see every emitted token in order."""

import pytest

from model.engine import Engine


pytestmark = pytest.mark.usefixtures("one_torch_thread")


PROMPTS = [[5, 9, 2, 7], [11, 3], [8, 8, 1, 4, 6, 2, 13], [21]]


@pytest.mark.parametrize("use_mtp", [False, True])
def test_each_row_draws_what_it_draws_alone(make_model, use_mtp):
    engine = Engine(make_model(seed=3), threads=None)
    seeds, limits = [101, 7, 55, 3], [12, 5, 9, 1]
    batched = engine.generate(PROMPTS, max_new_tokens=limits, temperature=1.0, seed=seeds,
                              eos_token_ids=(), use_mtp=use_mtp)
    for i, prompt in enumerate(PROMPTS):
        alone = engine.generate([prompt], max_new_tokens=limits[i], temperature=1.0,
                                seed=[seeds[i]], eos_token_ids=(), use_mtp=use_mtp)
        assert batched.tokens[i] == alone.tokens[0], i
        assert len(batched.tokens[i]) == limits[i]
    # an int seed for a batch of one row draws like the per-row seed
    single = engine.generate([PROMPTS[0]], max_new_tokens=12, temperature=1.0, seed=101,
                             eos_token_ids=(), use_mtp=use_mtp)
    assert single.tokens[0] == batched.tokens[0]


def test_row_stop_strings_and_the_token_callback(make_model):
    from pretrain.tokenizer import build_byte_tokenizer

    tok = build_byte_tokenizer()
    model = make_model(seed=1, vocab_size=len(tok))
    engine = Engine(model, tok, threads=None)
    prompts = [tok.encode("abc"), tok.encode("hello there")]
    free = engine.generate(prompts, max_new_tokens=16, temperature=1.0, seed=[1, 2],
                           eos_token_ids=())
    text = free.text[1]
    stop = next((text[i:i + 2] for i in range(2, len(text) - 2)
                 if "\ufffd" not in text[i:i + 2]), None)
    if stop is None:
        pytest.skip("no clean stop candidate in the random text")
    seen = {0: [], 1: []}
    finished = {}

    def on_tokens(i, tokens, finish):
        seen[i] += tokens
        if finish is not None:
            finished[i] = finish

    cut = engine.generate(prompts, max_new_tokens=16, temperature=1.0, seed=[1, 2],
                          eos_token_ids=(), row_stop_strings=[(), (stop,)], on_tokens=on_tokens)
    assert cut.tokens[0] == free.tokens[0]  # row 0 has no stop string
    assert cut.text[1] == text[:text.find(stop) + len(stop)]
    assert cut.finish_reason[1] == "stop" and cut.tokens[1] == free.tokens[1][:len(cut.tokens[1])]
    assert seen == {0: cut.tokens[0], 1: cut.tokens[1]}
    assert finished == {0: cut.finish_reason[0], 1: "stop"}
    with pytest.raises(ValueError, match="3 seeds for 2 prompts"):
        engine.generate(prompts, max_new_tokens=4, seed=[1, 2, 3])
    with pytest.raises(ValueError, match="max_new_tokens: 1 values for 2 prompts"):
        engine.generate(prompts, max_new_tokens=[4])


@pytest.mark.parametrize("use_mtp", [False, True])
def test_rows_admitted_between_steps_draw_what_they_draw_alone(make_model, use_mtp):
    engine = Engine(make_model(seed=3), threads=None)
    late = [([4, 4, 9], 6, 77, ()), ([13, 2], 10, 5, ())]
    calls = []

    def admit(active):
        calls.append(active)
        return {3: [late[0]], 5: [late[1]]}.get(len(calls), [])

    seen = {}
    batched = engine.generate(PROMPTS[:2], max_new_tokens=[12, 5], temperature=1.0,
                              seed=[101, 7], eos_token_ids=(), use_mtp=use_mtp, admit=admit,
                              on_tokens=lambda i, t, f: seen.setdefault(i, []).extend(t))
    assert len(batched.tokens) == 4 and calls[2] == 2 and calls[4] >= 1
    rows = [(PROMPTS[0], 12, 101), (PROMPTS[1], 5, 7)] + [(i, m, s) for i, m, s, _ in late]
    for k, (ids, limit, seed) in enumerate(rows):
        alone = engine.generate([ids], max_new_tokens=limit, temperature=1.0, seed=[seed],
                                eos_token_ids=(), use_mtp=use_mtp)
        assert batched.tokens[k] == alone.tokens[0], k
        assert seen[k] == alone.tokens[0]
    with pytest.raises(ValueError, match="admit needs per-row seeds"):
        engine.generate(PROMPTS[:1], max_new_tokens=2, seed=1, admit=admit)
