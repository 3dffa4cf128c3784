"""The first-run fixes of issue 14: closing summaries, --help text, --set errors, eval compare,
the random-model note. Expected numbers are worked out by hand in each test."""

from __future__ import annotations

import json
import re

import pytest

from distill.cli import build_parser, main
from distill.cli.pretrain import summary
from evals.report import headline_table
from recipes.config import ConfigError, load_config

TINY_MODEL = """\
model:
  vocab_size: 272
  hidden_size: 64
  num_hidden_layers: 2
  first_k_dense_replace: 1
  intermediate_size: 96
  num_attention_heads: 2
  q_lora_rank: 32
  kv_lora_rank: 32
  qk_nope_head_dim: 16
  qk_rope_head_dim: 8
  v_head_dim: 16
  n_routed_experts: 8
  moe_intermediate_size: 32
  num_experts_per_tok: 2
  n_group: 2
  topk_group: 1
"""


def _result(model: str, pass1: float, se: float, passk: dict, tokens: float) -> dict:
    return {"model": model, "benchmark": "synthetic:arithmetic", "num_problems": 4,
            "samples_per_problem": 2, "pass@1": {"mean": pass1, "se": se}, "pass@k": passk,
            "maj@k": {k: v for k, v in passk.items()}, "truncation_rate": 0.0,
            "completion_tokens": {"mean": tokens, "median": tokens, "p90": tokens}}


def _eval_dir(path, results):
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"results": results}))
    return path


def test_headline_table():
    table = headline_table([_result("base", 0.375, 0.125, {"1": 0.375, "2": 0.5}, 41.25)])
    header, row = table.splitlines()
    assert header.split() == ["model", "benchmark", "pass@1", "%", "pass@k", "%", "mean", "tokens"]
    assert re.split(r"\s{2,}", row) == ["base", "synthetic:arithmetic", "37.5 ± 12.5", "50.0 (k=2)",
                                        "41.2"]


def test_pretrain_summary(tmp_path):
    rows = [{"step": 1, "loss": 5.0, "tokens_per_s": 100.0, "step_s": 1.0},
            {"step": 2, "loss": 4.0, "tokens_per_s": 200.0, "step_s": 3.0, "val_loss": 4.5},
            {"step": 3, "loss": 3.5, "tokens_per_s": 300.0, "step_s": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "final").mkdir()
    lines = summary(tmp_path).splitlines()
    assert lines[0] == f"model: {tmp_path / 'final'}"
    assert lines[1] == "step 3: train loss 3.5000, held-out loss 4.5000 (step 2)"
    # tokens = 100*1 + 200*3 + 300*1 = 1000 over 5 s
    assert lines[2] == "throughput: 200 tokens/s over 3 logged steps"


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_eval_compare_usage_line(capsys):
    assert _help(["eval", "compare"], capsys).startswith(
        "usage: distillery eval compare [-h] [--out OUT] [--force] RUN [RUN ...]")


def test_help_lists_keys_relative_to_the_section_with_defaults(capsys):
    text = _help(["pretrain"], capsys)
    assert "KEY is relative to the `pretrain:` section" in " ".join(text.split())
    assert re.search(r"^  train\.max_steps +200$", text, re.M)
    assert re.search(r"^  model\.\* +ModelConfig keys", text, re.M)
    text = _help(["eval", "run"], capsys)
    assert re.search(r"^  sampling\.temperature +0\.6$", text, re.M)
    assert re.search(r"^  models +list of ModelSpec: name, path, backend=engine", text, re.M)


def _config_parsers():
    """(command words, parser) for every command that takes --set with a config."""
    found = []

    def walk(parser, words):
        for action in parser._actions:
            if action.dest == "overrides":
                found.append((words, parser))
            for name, sub in getattr(action, "choices", None).items() if isinstance(
                    getattr(action, "choices", None), dict) else []:
                walk(sub, [*words, name])
    walk(build_parser(), [])
    return found


def test_every_help_example_is_valid_for_its_command():
    """The `--set` example in each command's help must load into that command's config."""
    from distill.cli.confighelp import import_object

    checked = 0
    for words, parser in _config_parsers():
        action = next(a for a in parser._actions if a.dest == "overrides")
        example = re.search(r"e\.g\. --set (\S+)", action.help)
        if example is None or words == ["run"]:
            continue
        path, _ = parser.recipe_config  # keys are relative to the section: no section here
        try:
            load_config(import_object(path), None, [example.group(1)])
        except ConfigError as e:  # defaults alone may lack a required value; the --set is fine
            assert not str(e).startswith("--set"), (words, str(e))
        checked += 1
    assert checked >= 5  # model init, pretrain, tokenizer, eval, eval run


def test_set_error_from_a_cross_field_check_names_the_set(capsys):
    code = main(["pretrain", "--config", "recipes/pretrain/tiny.yaml", "--set", "train.seq_len=4096"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("distillery: error: --set train.seq_len=4096: train.seq_len=4096 exceeds")


def test_eval_compare_does_not_overwrite(tmp_path, capsys):
    run = _eval_dir(tmp_path / "a", [_result("base", 0.5, 0.1, {"1": 0.5}, 10.0)])
    out = tmp_path / "cmp"
    assert main(["eval", "compare", str(run), "--out", str(out)]) == 0
    first = (out / "compare.md").read_text()
    _eval_dir(tmp_path / "b", [_result("sft", 0.75, 0.1, {"1": 0.75}, 12.0)])
    code = main(["eval", "compare", str(tmp_path / "b"), "--out", str(out)])
    assert code == 2 and "compare.md exists; pass --force" in capsys.readouterr().err
    assert (out / "compare.md").read_text() == first
    assert main(["eval", "compare", str(tmp_path / "b"), "--out", str(out), "--force"]) == 0
    assert "| b | sft |" in (out / "compare.md").read_text()


def test_generate_notes_a_random_model(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_MODEL)
    ckpt = tmp_path / "ckpt"
    assert main(["model", "init", "--config", str(tmp_path / "tiny.yaml"), "--out", str(ckpt)]) == 0
    argv = ["model", "generate", str(ckpt), "--prompt", "1+1=", "--max-new-tokens", "2"]
    assert main(argv) == 0
    assert "is a randomly initialised model" in capsys.readouterr().out
    (ckpt / "init_config.yaml").unlink()  # what a trained checkpoint looks like
    assert main(argv) == 0
    assert "randomly initialised" not in capsys.readouterr().out


def test_every_option_help_shows_its_default(capsys):
    text = " ".join(_help(["data", "synth"], capsys).split())
    assert "1..5: more steps, bigger numbers (default: 2)" in text
    assert "--seed SEED default: 0" in text
    text = " ".join(_help(["model", "generate"], capsys).split())
    assert "0 = greedy (default: 0.6)" in text and "--top-p TOP_P default: 0.95" in text
    assert "default: False" not in text  # off-by-default flags need no note
