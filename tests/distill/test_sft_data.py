"""distill.sft without training: recipe and TRL pass-through, sources and field maps, style and
length control, the fail-fast tokenizer/template checks, and the label masks TRL builds from our
conversations (against a prompt length computed independently from the rendered template)."""

from __future__ import annotations

import json

import pytest

from distill.sft import LengthConfig, SFTRecipe, SFTSource, StyleConfig
from distill.sft.checks import check_tokenizer
from distill.sft.data import load_sources, split_reasoning
from distill.sft.style import build_conversations
from distill.sft.trl_args import build_sft_config
from pretrain.tokenizer import build_byte_tokenizer
from recipes.config import ConfigError, load_config

TRACE = "<think>\nstep one\nstep two\n</think>\n\nThe answer is 4."


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


def _rows(n, **extra):
    return [{"messages": [{"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": TRACE}], **extra} for i in range(n)]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# -- recipe and TRL fields -----------------------------------------------------------------------

def test_recipe_loads_and_trl_fields_pass_through(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sft:\n  model: m\n  data: [{path: d.jsonl, weight: 0.5}]\n"
                      "  trl: {max_steps: 3, learning_rate: 1.0e-4, packing: true}\n")
    cfg = load_config(SFTRecipe, recipe, section="sft")
    assert cfg.data[0].weight == 0.5
    args = build_sft_config(cfg.trl, str(tmp_path / "ck"), seed=7, cpu=True)
    assert (args.max_steps, args.learning_rate, args.packing, args.seed) == (3, 1e-4, True, 7)
    assert args.assistant_only_loss and args.output_dir == str(tmp_path / "ck")
    with pytest.raises(ConfigError, match="did you mean 'style'"):
        recipe.write_text("sft:\n  model: m\n  styel: {}\n")
        load_config(SFTRecipe, recipe, section="sft")


@pytest.mark.parametrize("key, message", [
    ("learning_rat", "did you mean 'learning_rate'"),
    ("max_seq_length", "renamed to max_length"),
    ("evaluation_strategy", "renamed to eval_strategy"),
    ("num_of_sequences", "removed"),
    ("output_dir", "sft.out_dir"),
    ("assistant_only_loss", "always on"),
])
def test_bad_trl_fields_are_named(tmp_path, key, message):
    with pytest.raises(ValueError, match=message) as err:
        build_sft_config({key: 1}, str(tmp_path), seed=0, cpu=True)
    assert f"sft.trl.{key}" in str(err.value)


# -- sources ------------------------------------------------------------------------------------

def test_split_reasoning():
    assert split_reasoning(TRACE) == ("step one\nstep two", "The answer is 4.")
    assert split_reasoning("just 4") == (None, "just 4")
    with pytest.raises(ValueError, match="unbalanced"):
        split_reasoning("<think> no close")


def test_field_maps_and_system_prompts(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"q": "1+1?", "r": "two things", "a": "2", "sys": "be brief"}])
    b = _write(tmp_path / "b.jsonl", [{"prompt": "2+2?", "completion": TRACE}])
    instances = load_sources([
        SFTSource(a, fields={"prompt": "q", "reasoning": "r", "answer": "a", "system": "sys"}),
        SFTSource(b, fields={"prompt": "prompt", "response": "completion"}, system_prompt="src"),
    ], seed=0)
    by_prompt = {i.turns[-1]["content"]: i for i in instances}
    assert by_prompt["1+1?"].system == "be brief" and by_prompt["1+1?"].reasoning == "two things"
    assert by_prompt["2+2?"].system == "src" and by_prompt["2+2?"].answer == "The answer is 4."


def test_missing_column_names_file_row_and_columns(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "x"}])
    with pytest.raises(ValueError, match=r"bad.jsonl: row 1: missing column 'messages'.*\['prompt'\]"):
        load_sources([SFTSource(path)], seed=0)
    path = _write(tmp_path / "bad2.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(ValueError, match="row 1: messages must end with a user turn"):
        load_sources([SFTSource(path)], seed=0)


def test_mixing_weights_scale_each_source(tmp_path):
    a = _write(tmp_path / "a.jsonl", _rows(10, src="a"))
    b = _write(tmp_path / "b.jsonl", _rows(6, src="b"))
    instances = load_sources([SFTSource(a, weight=0.5), SFTSource(b, weight=2.0)], seed=1)
    counts = {s: sum(i.source == s for i in instances) for s in (a, b)}
    assert counts == {a: 5, b: 12}
    assert len({i.turns[-1]["content"] for i in instances if i.source == a}) == 5  # no repeats


# -- style and length ---------------------------------------------------------------------------

def _instances(tmp_path, n=1):
    return load_sources([SFTSource(_write(tmp_path / "d.jsonl", _rows(n)))], seed=0)


def test_styles(tmp_path, tok):
    inst = _instances(tmp_path)
    (r1,), _ = build_conversations(inst, StyleConfig("r1"), LengthConfig(), tok)
    assert r1["messages"][-1]["content"] == TRACE
    (short,), _ = build_conversations(inst, StyleConfig("short"), LengthConfig(), tok)
    assert short["messages"] == [{"role": "user", "content": "q0"},
                                 {"role": "assistant", "content": "The answer is 4."}]
    rows, stats = build_conversations(inst, StyleConfig("v3_mix", reflection_system_prompt="REFLECT"),
                                      LengthConfig(), tok)
    assert stats["samples"] == 2
    assert rows[0]["messages"] == short["messages"]
    assert rows[1]["messages"] == [{"role": "system", "content": "REFLECT"}] + r1["messages"]


def test_think_for_n_carries_the_real_reasoning_length(tmp_path, tok):
    inst = _instances(tmp_path)
    (row,), _ = build_conversations(inst, StyleConfig(), LengthConfig(think_for_n=True), tok)
    n = len(tok.encode("step one\nstep two", add_special_tokens=False))  # byte tokenizer: 17
    assert n == len("step one\nstep two")
    assert row["messages"][0]["content"] == f"q0\n\nThink for {n} tokens."


def test_budget_drop_and_cap(tmp_path, tok):
    inst = _instances(tmp_path, n=3)
    full = len(tok.encode(TRACE, add_special_tokens=False)) + 1  # + EOS
    rows, stats = build_conversations(inst, StyleConfig(), LengthConfig(max_tokens=full), tok)
    assert stats["samples"] == 3 and "dropped_over_budget" not in stats
    with pytest.raises(ValueError, match="no sample is left"):
        build_conversations(inst, StyleConfig(), LengthConfig(max_tokens=full - 1), tok)
    budget = full - 6
    rows, stats = build_conversations(
        inst, StyleConfig(), LengthConfig(max_tokens=budget, over_budget="cap", think_for_n=True), tok)
    assert stats["capped"] == 3
    content = rows[0]["messages"][-1]["content"]
    assert len(tok.encode(content, add_special_tokens=False)) + 1 <= budget
    reasoning, answer = split_reasoning(content)
    assert answer == "The answer is 4." and "step one\nstep two".startswith(reasoning)
    assert rows[0]["messages"][0]["content"].endswith(f"Think for {len(reasoning)} tokens.")


# -- fail-fast checks ---------------------------------------------------------------------------

def test_our_template_passes_the_checks(tok):
    check_tokenizer(tok, "tok")


def test_pad_equal_to_eos_fails(tok):
    bad = build_byte_tokenizer()
    bad.pad_token = bad.eos_token
    with pytest.raises(ValueError, match="pad token == EOS"):
        check_tokenizer(bad, "tok")


@pytest.mark.parametrize("template, message", [
    ("{% for m in messages %}{{ m['content'] }}{% endfor %}", "no {% generation %}"),
    # Markers present but the EOS outside them: the model would never learn to stop.
    ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
     "{% endgeneration %}{{ eos_token }}{% else %}{{ m['content'] }}{% endif %}{% endfor %}",
     "EOS is not trained"),
    # R1-distill style: the reasoning is stripped from the assistant turn.
    ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}"
     "{{ m['content'].split('</think>')[-1] }}{{ eos_token }}{% endgeneration %}"
     "{% else %}{{ m['content'] }}{% endif %}{% endfor %}", "reasoning inside <think>"),
])
def test_bad_templates_fail(template, message):
    bad = build_byte_tokenizer()
    bad.chat_template = template
    with pytest.raises(ValueError, match=message):
        check_tokenizer(bad, "tok")


# -- label masks as TRL builds them from our conversations -------------------------------------

def test_labels_mask_the_prompt_and_keep_the_assistant_turn_and_eos(tmp_path, tok):
    import warnings

    from datasets import Dataset
    from trl import SFTTrainer

    from model import ModelConfig, Transformer

    rows, _ = build_conversations(_instances(tmp_path), StyleConfig(system_prompt="sys"),
                                  LengthConfig(), tok)
    model = Transformer(ModelConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=1, first_k_dense_replace=1,
                                    num_attention_heads=2, kv_lora_rank=16, q_lora_rank=None,
                                    qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
                                    num_nextn_predict_layers=0))
    args = build_sft_config({"per_device_train_batch_size": 1, "max_steps": 1}, str(tmp_path / "o"),
                            seed=0, cpu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    # Independent reference: the prompt is what the template renders with a generation prompt.
    prompt = tok.apply_chat_template(rows[0]["messages"][:-1], add_generation_prompt=True,
                                     tokenize=False)
    P = len(tok.encode(prompt, add_special_tokens=False))
    assert ids == tok.encode(prompt + TRACE + tok.eos_token, add_special_tokens=False)
    assert labels[:P] == [-100] * P
    assert labels[P:] == ids[P:] and labels[-1] == tok.eos_token_id
    assert tok.pad_token_id != tok.eos_token_id
