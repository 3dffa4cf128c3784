"""The inference engine against independent references: full (naive) forwards, float64 MLA,
a greedy loop over `model(ids)`, transformers' logits warpers, exact token distributions."""

import math

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from model import ModelConfig, Transformer
from model.cache import LatentCache
from model.engine import Engine
from model.moe import Router
from model.sampling import filter_logits, logits_to_probs, speculative_accept

TINY = dict(vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
            n_routed_experts=8, n_group=2, topk_group=1, num_experts_per_tok=2,
            moe_intermediate_size=32, intermediate_size=96, kv_lora_rank=32, q_lora_rank=48,
            qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, num_nextn_predict_layers=1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is faster, and on a busy 2-core machine two
    spinning OpenMP threads made every step ~100x slower (measured 0.02 s vs 2.6 s per generate)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(seed=0, logit_scale=3.0, **overrides):
    """A tiny fp32 model with O(1) activations (std 1/sqrt(fan_in)), so attention is far from
    uniform and a cache or mask bug moves the logits well past the tolerance; `logit_scale`
    makes the next-token distributions peaky (no near-ties for greedy comparisons)."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, p.shape[-1] ** -0.5)
        model.lm_head.weight.mul_(logit_scale)
        for m in model.modules():
            if isinstance(m, Router):
                m.e_score_correction_bias.uniform_(-0.05, 0.05)
    return model


def right_pad(prompts):
    ids = torch.zeros(len(prompts), max(map(len, prompts)), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = torch.as_tensor(p)
    return ids, torch.tensor([len(p) for p in prompts])


@torch.inference_mode()
def test_cache_decode_matches_full_forward_at_every_position():
    model = make_model()
    engine = Engine(model)
    gen = torch.Generator().manual_seed(1)
    prompt_lens, steps = [5, 2, 1], 6
    full = [torch.randint(0, 97, (n + steps,), generator=gen) for n in prompt_lens]
    ref = [model(f[None]).logits[0] for f in full]
    ids, lengths = right_pad([f[:n] for f, n in zip(full, prompt_lens)])
    cache = engine.new_cache(len(full), max(prompt_lens) + steps)
    last, hidden = engine.prefill(cache, ids, lengths)
    prompt_logits = engine.logits(hidden)
    for b, n in enumerate(prompt_lens):
        torch.testing.assert_close(prompt_logits[b, :n], ref[b][:n], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(last[b], ref[b][n - 1], atol=1e-4, rtol=1e-4)
    for step in range(steps):  # each row at its own position
        pos = torch.tensor(prompt_lens) + step
        tokens = torch.stack([f[p] for f, p in zip(full, pos)])
        logits, _ = engine.decode_step(cache, tokens[:, None], pos[:, None], int(pos.max()) + 1)
        for b in range(len(full)):
            torch.testing.assert_close(logits[b, 0], ref[b][pos[b]], atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_mtp_cache_matches_full_mtp_forward():
    """Engine MTP steps (prefill, then 2-token steps whose slot n+1 is garbage half the time)
    against the naive MTP module over the whole sequence: at i it sees (h_i, Emb(t_{i+1}))."""
    model = make_model()
    engine, layer = Engine(model), model.mtp_layers[0]
    L, P = 14, 4
    full = torch.randint(0, 97, (1, L), generator=torch.Generator().manual_seed(2))
    out = model(full)
    cos, sin = model.model.rotary_emb(torch.arange(L)[None])
    h = layer(layer.combine(model.model.embed_tokens(full[:, 1:]), out.hidden_states[:, :-1]),
              cos[:, :-1], sin[:, :-1])
    ref = model.lm_head(layer.shared_head.norm(h))[0]  # (L-1, V): position i predicts t_{i+2}

    cache = engine.new_cache(1, L + 2)
    _, hidden = engine.prefill(cache, full[:, :P], torch.tensor([P]))
    mtp = engine.mtp_step(cache, hidden, full[:, 1:P + 1], torch.arange(P)[None], P)
    torch.testing.assert_close(mtp[0], ref[:P], atol=1e-4, rtol=1e-4)
    n, accept = P, [False, True, True, False, True]
    for ok in accept:  # verify [t_n, x] at [n, n+1]; x = t_{n+1} (accepted) or a wrong draft
        x = full[0, n + 1] if ok else (full[0, n + 1] + 1) % 97
        positions = torch.tensor([[n, n + 1]])
        _, hidden = engine.decode_step(cache, torch.stack((full[0, n], x))[None], positions, n + 2)
        # Rejected: t_{n+1} is the resampled token; index 1 is garbage (the bonus after a wrong x).
        nxt = torch.stack((full[0, n + 1], full[0, n + 2] if ok else x))[None]
        mtp = engine.mtp_step(cache, hidden, nxt, positions, n + 2)
        torch.testing.assert_close(mtp[0, 0], ref[n], atol=1e-4, rtol=1e-4)
        if ok:
            torch.testing.assert_close(mtp[0, 1], ref[n + 1], atol=1e-4, rtol=1e-4)
        n += 2 if ok else 1
    assert n <= L - 2


def _rope64(x, positions, theta):
    """Interleaved-pair rotation (spec §2.2) as complex multiplication, float64."""
    R = x.shape[-1]
    angles = positions[:, None].double() * theta ** (-torch.arange(0, R, 2).double() / R)
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], R // 2, 2).contiguous())
    rot = torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(z * (rot[:, None] if x.dim() == 3 else rot)).flatten(-2)


def _naive_mla64(mla, x_TD, eps, theta):
    """Float64 MLA of one sequence (positions 0..T-1): up-projected per-head keys and values,
    softmax(QK^T)V; returns (output (T, D), latent (T, C), rotated rope key (T, R))."""
    W = {k: v.double() for k, v in mla.state_dict().items()}
    rms = lambda x, w: w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # noqa: E731
    T, H = x_TD.shape[0], mla.num_heads
    Dn, R, Dv, C = mla.nope_dim, mla.rope_dim, mla.v_dim, mla.latent_dim
    x = x_TD.double()
    pos = torch.arange(T)
    q = (rms(x @ W["q_a_proj.weight"].T, W["q_a_layernorm.weight"]) @ W["q_b_proj.weight"].T)
    q_nope, q_pe = q.view(T, H, Dn + R).split([Dn, R], dim=-1)
    q_pe = _rope64(q_pe, pos, theta)
    c, k_pe = (x @ W["kv_a_proj_with_mqa.weight"].T).split([C, R], dim=-1)
    c, k_pe = rms(c, W["kv_a_layernorm.weight"]), _rope64(k_pe, pos, theta)
    k_nope, v = (c @ W["kv_b_proj.weight"].T).view(T, H, Dn + Dv).split([Dn, Dv], dim=-1)
    scores = (torch.einsum("thd,shd->hts", q_nope, k_nope)
              + torch.einsum("thr,sr->hts", q_pe, k_pe)) / math.sqrt(Dn + R)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    out = torch.einsum("hts,shv->thv", scores.softmax(-1), v).reshape(T, H * Dv)
    return out @ W["o_proj.weight"].T, c, k_pe


@torch.inference_mode()
def test_absorbed_attention_matches_float64_naive_attention():
    model = make_model()
    cfg, mla = model.config, model.main_layers[1].self_attn
    theta = model.config.rope_settings["rope_theta"]
    B, T_pre, steps, lens = 2, 4, 3, [4, 2]
    x = torch.randn(B, T_pre + steps, cfg.hidden_size, generator=torch.Generator().manual_seed(3))
    cache = LatentCache(cfg.num_hidden_layers, B, T_pre + steps, cfg.kv_lora_rank,
                        cfg.qk_rope_head_dim, torch.float32, "cpu")

    def run(x_BTD, positions_BT, length):
        cos, sin = model.model.rotary_emb(positions_BT)
        mask = torch.arange(length)[None, None] <= positions_BT[..., None]
        return mla.forward_absorbed(x_BTD, cos, sin, cache, positions_BT, mask)

    outs = [[o] for o in run(x[:, :T_pre], torch.arange(T_pre).expand(B, -1), T_pre)]
    for s in range(steps):  # row b's step-s input sits at position lens[b] + s
        pos = torch.tensor(lens)[:, None] + s
        for b, o in enumerate(run(x[:, T_pre + s:T_pre + s + 1], pos, int(pos.max()) + 1)):
            outs[b].append(o)
    for b, n in enumerate(lens):
        seq = torch.cat((x[b, :n], x[b, T_pre:]))
        ref, c_ref, k_ref = _naive_mla64(mla, seq, cfg.rms_norm_eps, theta)
        got = torch.cat((outs[b][0][:n], *outs[b][1:]))
        torch.testing.assert_close(got.double(), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(cache.latent[1, b, :n + steps].double(), c_ref, atol=1e-5,
                                   rtol=1e-5)
        torch.testing.assert_close(cache.rope_key[1, b, :n + steps].double(), k_ref, atol=1e-5,
                                   rtol=1e-5)


PROMPTS = [[5, 17, 3, 42, 8, 1], [60], [9, 9, 31]]


@torch.inference_mode()
def _reference_greedy(model, prompt, n, eos=()):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        if ids[-1] in eos:
            break
    return ids[len(prompt):]


def test_greedy_matches_reference_loop():
    model = make_model()
    result = Engine(model).generate(PROMPTS, max_new_tokens=10, temperature=0, eos_token_ids=())
    assert result.tokens == [_reference_greedy(model, p, 10) for p in PROMPTS]
    assert result.finish_reason == ["length"] * 3
    assert result.num_prompt_tokens == [6, 1, 3]
    assert result.num_generated == 30 and result.acceptance_rate is None


def _simulate_greedy_drafts(model, prompt, tokens):
    """Independent MTP bookkeeping: with the final greedy tokens known, the draft for t_{n+1}
    is argmax of the naive MTP at n-1, accepted iff it equals t_{n+1}. Returns (number of
    drafts, indices into `tokens` of the accepted drafts)."""
    seq = torch.tensor([list(prompt) + tokens])
    with torch.inference_mode():
        out = model(seq)
        layer = model.mtp_layers[0]
        cos, sin = model.model.rotary_emb(torch.arange(seq.shape[1])[None])
        h = layer(layer.combine(model.model.embed_tokens(seq[:, 1:]), out.hidden_states[:, :-1]),
                  cos[:, :-1], sin[:, :-1])
        guess = model.lm_head(layer.shared_head.norm(h))[0].argmax(-1)  # guess[i] ~ t_{i+2}
    n, end, drafts, accepted = len(prompt), len(prompt) + len(tokens) - 1, 0, []
    while n < end:  # t_n is the last emitted token; verify a draft for t_{n+1}
        ok = int(guess[n - 1]) == int(seq[0, n + 1])
        drafts += 1
        if ok:
            accepted.append(n + 1 - len(prompt))
        n += 1 + ok
    return drafts, accepted


def test_speculative_greedy_equals_plain_greedy():
    model = make_model(vocab_size=13, logit_scale=2.0)  # small vocab: drafts often accepted
    engine = Engine(model)
    prompts = [[t % 13 for t in p] for p in PROMPTS]
    plain = engine.generate(prompts, max_new_tokens=17, temperature=0, eos_token_ids=())
    spec = engine.generate(prompts, max_new_tokens=17, temperature=0, eos_token_ids=(),
                           use_mtp=True)
    assert spec.tokens == plain.tokens
    assert all(len(t) == 17 for t in spec.tokens) and spec.finish_reason == ["length"] * 3
    sims = [_simulate_greedy_drafts(model, p, t) for p, t in zip(prompts, plain.tokens)]
    assert spec.draft_tokens == sum(d for d, _ in sims)
    assert spec.accepted_tokens == sum(len(a) for _, a in sims)
    assert 0 < spec.accepted_tokens < spec.draft_tokens
    assert 0.0 <= spec.acceptance_rate <= 1.0
    assert spec.num_steps < plain.num_steps
    # EOS = a token first seen as an accepted draft: the sequence must end there, without the
    # bonus token that the same step produced. Plus a few other tokens as EOS.
    inside = {t[j] for t, (_, acc) in zip(plain.tokens, sims) for j in acc
              if j < len(t) - 1 and t.index(t[j]) == j}
    assert inside
    for eos in sorted(inside)[:3] + sorted({t[0] for t in plain.tokens} - inside)[:1]:
        got = engine.generate(prompts, max_new_tokens=17, temperature=0, eos_token_ids=[eos],
                              use_mtp=True)
        want = [t[:t.index(eos) + 1] if eos in t else t for t in plain.tokens]
        assert got.tokens == want
        assert got.finish_reason == ["stop" if eos in t else "length" for t in plain.tokens]


def _chi2(counts, probs):
    """Pearson statistic and degrees of freedom over the bins with expected count >= 5;
    any sample in a zero-probability bin is an outright failure."""
    n = counts.sum()
    assert counts[probs == 0].sum() == 0
    keep = probs * n >= 5
    expected = probs[keep] * n
    return float(((counts[keep] - expected) ** 2 / expected).sum()), int(keep.sum()) - 1


def test_speculative_accept_marginal_is_p():
    """The rule itself, float64: drafts from q, outputs must follow p exactly, and the
    acceptance rate is sum_x min(p(x), q(x))."""
    p = torch.tensor([0.30, 0.05, 0.00, 0.25, 0.15, 0.25], dtype=torch.float64)
    q = torch.tensor([0.10, 0.30, 0.20, 0.25, 0.15, 0.00], dtype=torch.float64)
    N = 200_000
    gen = torch.Generator().manual_seed(0)
    draft = torch.multinomial(q, N, replacement=True, generator=gen)
    accepted, token = speculative_accept(p.expand(N, -1), q.expand(N, -1), draft, gen)
    assert torch.equal(token[accepted], draft[accepted])
    stat, df = _chi2(torch.bincount(token, minlength=6).double(), p)
    assert stat < df + 6 * math.sqrt(2 * df), (stat, df)
    assert abs(accepted.double().mean() - torch.minimum(p, q).sum()) < 0.005
    same_accepted, same = speculative_accept(q.expand(N, -1), q.expand(N, -1), draft, gen)
    assert same_accepted.all() and torch.equal(same, draft)  # p == q: nothing to resample


def test_speculative_sampling_preserves_distribution():
    """Joint law of the first 3 sampled tokens (t1 from the prefill, t2 from the rejection rule,
    t3 from a bonus token or the next rule) against the exact law from full forwards."""
    V, temperature, top_k, N = 8, 0.8, 5, 12_000
    model = make_model(vocab_size=V, logit_scale=2.0)
    prompt = [3, 1, 4]

    def law(prefixes):  # float64 next-token law under temperature + top-k, by hand
        with torch.inference_mode():
            logits = model(torch.tensor(prefixes)).logits[:, -1].double() / temperature
        kth = logits.sort(-1, descending=True).values[:, top_k - 1:top_k]
        return logits.masked_fill(logits < kth, float("-inf")).softmax(-1)

    p1 = law([prompt])[0]
    p2 = law([prompt + [a] for a in range(V)])
    p3 = law([prompt + [a, b] for a in range(V) for b in range(V)]).view(V, V, V)
    exact = (p1[:, None, None] * p2[:, :, None] * p3).flatten()
    result = Engine(model).generate([prompt] * N, max_new_tokens=3, temperature=temperature,
                                    top_k=top_k, eos_token_ids=(), seed=0, use_mtp=True)
    codes = torch.tensor([(a * V + b) * V + c for a, b, c in result.tokens])
    stat, df = _chi2(torch.bincount(codes, minlength=V ** 3).double(), exact)
    assert stat < df + 6 * math.sqrt(2 * df), (stat, df)
    assert 0.05 < result.acceptance_rate < 0.95  # the rule really rejects and accepts


def test_top_k_top_p_against_hand_computation_and_transformers():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    # softmax = [0.6439, 0.2369, 0.0871, 0.0321]; mass before each: 0, .644, .881, .968
    for top_p, kept in [(0.5, 1), (0.8, 2), (0.9, 3), (0.97, 4), (1.0, 4)]:
        finite = filter_logits(logits, top_p=top_p).isfinite()[0].tolist()
        assert finite == [True] * kept + [False] * (4 - kept), top_p
    e = [math.exp(v / 0.5) for v in (3.0, 2.0)]
    want = torch.tensor([[e[0] / sum(e), e[1] / sum(e), 0.0, 0.0]])
    torch.testing.assert_close(logits_to_probs(logits, 0.5, top_k=2), want)
    torch.testing.assert_close(logits_to_probs(logits, 0.5, top_k=3, top_p=0.95), want)
    assert logits_to_probs(logits, 0.0).tolist() == [[1.0, 0.0, 0.0, 0.0]]  # greedy = one-hot

    x = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 3
    for p in (0.1, 0.5, 0.9, 0.99):
        want = TopPLogitsWarper(p)(None, x.clone())
        assert torch.equal(filter_logits(x, top_p=p).isfinite(), want.isfinite())
    x[:, 7] = x[:, 8]  # a tie: top-k keeps both (a nucleus may cut between tied tokens)
    for k in (1, 5, 49):
        want = TopKLogitsWarper(k)(None, x.clone())
        assert torch.equal(filter_logits(x, top_k=k).isfinite(), want.isfinite())


def test_stop_strings_with_byte_tokenizer():
    from pretrain.tokenizer import build_byte_tokenizer

    tok = build_byte_tokenizer()
    model = make_model(vocab_size=len(tok), logit_scale=1.0)
    engine = Engine(model, tok)
    prompts = [list(b"Hello"), list(b"The cat")]
    free = engine.generate(prompts, max_new_tokens=24, temperature=1.0, seed=5, eos_token_ids=())
    assert free.text == [tok.decode(t, skip_special_tokens=True) for t in free.tokens]
    for i in range(2):
        text = free.text[i]
        j = next(j for j in range(4, len(text) - 2) if "\ufffd" not in text[j:j + 2])
        stop = text[j:j + 2]
        got = engine.generate(prompts, max_new_tokens=24, temperature=1.0, seed=5,
                              eos_token_ids=(), stop_strings=[stop, "never-seen-string"])
        # Reference by brute force: the shortest token prefix whose decoded text contains it.
        k = next(k for k in range(1, 25)
                 if stop in tok.decode(free.tokens[i][:k], skip_special_tokens=True))
        assert got.tokens[i] == free.tokens[i][:k]
        assert got.finish_reason[i] == "stop"
        assert got.text[i] == text[:text.index(stop) + len(stop)]
    with pytest.raises(ValueError, match="tokenizer"):
        Engine(model).generate(prompts, max_new_tokens=2, stop_strings=["x"])


@pytest.mark.parametrize("use_mtp", [False, True])
def test_max_new_tokens_seed_and_validation(use_mtp):
    model = make_model(max_position_embeddings=16)
    model.train()
    engine = Engine(model)
    kwargs = dict(max_new_tokens=7, temperature=1.0, eos_token_ids=(), use_mtp=use_mtp)
    a = engine.generate(PROMPTS, seed=11, **kwargs)
    b = engine.generate(PROMPTS, seed=11, **kwargs)
    assert a.tokens == b.tokens and [len(t) for t in a.tokens] == [7, 7, 7]
    assert a.finish_reason == ["length"] * 3 and model.training  # mode restored
    assert 0 <= a.accepted_tokens <= a.draft_tokens
    with pytest.warns(UserWarning, match="context"):  # 12 + 7 > 16: stops at the context
        c = engine.generate([[1] * 12, [2] * 16, [3]], seed=0, **kwargs)
    assert [len(t) for t in c.tokens] == [4, 0, 7] and c.finish_reason == ["length"] * 3
    with pytest.raises(ValueError, match="prompt 1 has 17 tokens"):
        engine.generate([[1, 2], [3] * 17], **kwargs)
    with pytest.raises(ValueError, match="prompt 2 is empty"):
        engine.generate([[1], [2], []], **kwargs)
    with pytest.raises(ValueError, match="MTP"):
        Engine(make_model(num_nextn_predict_layers=0)).generate([[1]], use_mtp=True)
