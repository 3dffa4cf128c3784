"""`distillery eval` end to end on a tiny random model: outputs, caching and resume, bad input,
budget forcing, and the metrics pipeline against hand-computed numbers (scripted generator)."""

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from distill.cli import main
from evals import runner
from evals.budget import force_budget
from evals.config import BenchmarkSpec, EvalConfig, ModelSpec, SamplingParams
from evals.generation import Generator, Sample, make_generator
from evals.report import pct
from evals.runner import run_eval
from recipes.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY = dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, first_k_dense_replace=1,
            intermediate_size=96, num_attention_heads=2, q_lora_rank=32, kv_lora_rank=32,
            qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
            moe_intermediate_size=32, num_experts_per_tok=2, n_group=2, topk_group=1,
            num_nextn_predict_layers=1)
QUESTIONS = {"p0": ("Half of one?", "\\frac{1}{2}"), "p1": ("Two plus two?", "4"),
             "p2": ("Five times two?", "10")}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from model import ModelConfig, Transformer
    from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer

    path = tmp_path_factory.mktemp("eval") / "tiny"
    tok = build_byte_tokenizer()
    config = ModelConfig(**TINY, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    Transformer(config).save_pretrained(path)
    save_tokenizer(tok, path)
    return path


def write_bench(path: Path) -> Path:
    with open(path, "w") as f:
        for pid, (question, gold) in QUESTIONS.items():
            f.write(json.dumps({"uid": pid, "q": question, "gold": gold}) + "\n")
    return path


def make_cfg(root: Path, checkpoint: Path, **overrides) -> EvalConfig:
    bench = write_bench(root / "bench.jsonl")
    values = dict(
        models=[ModelSpec("tiny", str(checkpoint))],
        benchmarks=[BenchmarkSpec("jsonl", path=str(bench), k=2,
                                  field_map={"question": "q", "reference": "gold", "id": "uid"})],
        sampling=SamplingParams(max_new_tokens=8), budgets=[6], budget_answer_tokens=4,
        verify_workers=1, out_dir=str(root / "out"))
    values.update(overrides)
    return EvalConfig(**values)


@pytest.fixture
def counted(monkeypatch):
    """Counts samples generated (rows, whatever the phases) and models loaded."""
    calls = {"samples": 0, "loads": 0}
    generate, make = runner._Work._generate, runner.make_generator

    def counting_generate(self, job, chunk, budget):
        calls["samples"] += len(chunk)
        return generate(self, job, chunk, budget)

    def counting_make(spec, **kwargs):
        calls["loads"] += 1
        return make(spec, **kwargs)

    monkeypatch.setattr(runner._Work, "_generate", counting_generate)
    monkeypatch.setattr(runner, "make_generator", counting_make)
    return calls


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("run")
    cfg = make_cfg(root, checkpoint)
    return cfg, run_eval(cfg)


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_outputs_hold_the_numbers(first_run):
    cfg, out = first_run
    for name in ("samples.jsonl", "results.json", "report.md", "accuracy.png", "lengths.png",
                 "budget.png", "eval_config.yaml"):
        assert (out / name).is_file(), name
    rows = read_rows(out)
    main_rows = [r for r in rows if r["budget"] is None]
    assert len(main_rows) == 3 * 2 and len(rows) == 3 * 2 + 3 * 2  # k=2, budget_k defaults to k
    for key in ("id", "problem_id", "sample_index", "prompt", "completion", "reasoning",
                "answer_text", "finish_reason", "prompt_tokens", "completion_tokens", "reference",
                "teacher", "verdicts", "correct"):
        assert key in rows[0], key
    (result,) = json.loads((out / "results.json").read_text())["results"]
    by_problem = {}
    for r in main_rows:
        by_problem.setdefault(r["problem_id"], []).append(r["correct"])
    assert result["pass@1"]["mean"] == pytest.approx(
        statistics.mean(sum(c) / len(c) for c in by_problem.values()))
    tokens = [r["completion_tokens"] for r in main_rows]
    assert result["completion_tokens"]["mean"] == pytest.approx(statistics.mean(tokens))
    assert set(result["pass@k"]) == {"1", "2"} and set(result["maj@k"]) == {"1", "2"}
    assert result["benchmark_revision"] and result["prompt_template_hash"]
    assert [p["budget"] for p in result["budget_curve"]] == [6]
    report = (out / "report.md").read_text()
    stats = result["completion_tokens"]
    assert f"{stats['mean']:.1f} / {stats['median']:.1f} / {stats['p90']:.1f}" in report
    assert pct(result["pass@k"]["2"]) + " (k=2)" in report
    assert pct(result["truncation_rate"]) in report and "budget.png" in report


def test_rerun_generates_nothing(first_run, counted):
    cfg, out = first_run
    before = (out / "samples.jsonl").read_bytes()
    results = json.loads((out / "results.json").read_text())["results"]
    run_eval(cfg)
    assert counted == {"samples": 0, "loads": 0}  # not even the model is loaded
    assert (out / "samples.jsonl").read_bytes() == before
    assert json.loads((out / "results.json").read_text())["results"] == results


def test_resume_after_a_crash_regenerates_only_the_lost_rows(first_run, counted, tmp_path):
    cfg, out = first_run
    shutil.copytree(out, tmp_path / "out")
    samples = tmp_path / "out" / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    lost_main = lines.pop(3)  # a whole main row gone as well, to check the reproduced tokens
    samples.write_text("".join(lines[:-1]) + lines[-1][:len(lines[-1]) // 2])  # cut mid-row
    with pytest.warns(UserWarning, match="incomplete last row"):
        run_eval(make_cfg(tmp_path, Path(cfg.models[0].path), out_dir=str(tmp_path / "out")))
    assert counted == {"samples": 2, "loads": 1}
    rows = {r["id"]: r for r in read_rows(tmp_path / "out")}
    for original in (json.loads(lost_main), json.loads(lines[-1])):
        again = rows[original["id"]]  # same per-sample seed -> the same tokens
        assert again["completion"] == original["completion"]
        assert again["teacher"]["seed"] == original["teacher"]["seed"]
    assert len(rows) == len(lines) + 1


@pytest.mark.parametrize("change, error, match", [
    (dict(benchmarks=[BenchmarkSpec("jsonl", path="no/such/file.jsonl")]), FileNotFoundError,
     "benchmarks\\[0\\].*no/such/file.jsonl"),
    (dict(pass_k=[1, 4]), ValueError, "pass_k \\[4\\].*2 per problem"),
    (dict(models=[ModelSpec("ghost", "no/such/model")]), FileNotFoundError,
     "models\\[0\\] \\(ghost\\).*no/such/model"),
])
def test_bad_input_fails_before_generation(checkpoint, counted, tmp_path, change, error, match):
    cfg = make_cfg(tmp_path, checkpoint, **change)
    with pytest.raises(error, match=match):
        run_eval(cfg)
    assert counted == {"samples": 0, "loads": 0}
    assert not (tmp_path / "out").exists()


def test_benchmark_row_with_a_missing_field_fails_before_generation(checkpoint, counted, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"q": "1+1?", "gold": "2"}) + "\n" + json.dumps({"q": "2+2?"}) + "\n")
    spec = BenchmarkSpec("jsonl", path=str(bad), field_map={"question": "q", "reference": "gold"})
    with pytest.raises(ValueError, match="bad.jsonl.*missing field"):
        run_eval(make_cfg(tmp_path, checkpoint, benchmarks=[spec]))
    assert counted == {"samples": 0, "loads": 0}


def test_budget_forcing_caps_thinking_on_the_real_model(checkpoint):
    gen = make_generator(ModelSpec("tiny", str(checkpoint)), enable_thinking=True)
    thinking_tokens = []
    generate = gen.generate

    def recording(prompts, n, sampling, **kw):
        out = generate(prompts, n, sampling, **kw)
        if kw.get("stop") == ("</think>",):
            thinking_tokens.extend(s.completion_tokens for (s,) in out)
        return out

    gen.generate = recording
    sampling = SamplingParams(temperature=1.0, max_new_tokens=64)
    for budget in (3, 10):
        for seed in range(2):  # one prompt per call, so every thinking call is this trace's
            thinking_tokens.clear()
            prompt = [{"role": "user", "content": f"What is {seed} + 1?"}]
            (s,) = force_budget(gen, [prompt], budget, sampling, seeds=[seed], num_waits=2,
                                answer_max_tokens=4)
            assert s.think_opened and "</think>" in s.text
            assert sum(thinking_tokens) <= budget
            assert s.reasoning_tokens <= budget
            assert s.completion_tokens <= s.reasoning_tokens + gen.count_tokens("\n</think>\n\n") + 4
    gen.close()


class Scripted(Generator):
    """Answers per question, in order: the i-th call for a question gets its i-th answer."""

    backend = "engine"

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = {q: list(a) for q, a in answers.items()}

    def count_tokens(self, text):
        return len(text.split()) or 1

    def _generate_flat(self, prompts, seeds, sampling, stop):
        out = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            if stop and sampling.max_new_tokens < 3:  # a budget-forcing thinking call, cut
                m = sampling.max_new_tokens
                out.append(Sample(" ".join(["ok"] * m), "length", 5, m))
            elif stop:  # a thinking call with room: think a little, then close
                out.append(Sample("ok ok ok</think>", "stop", 5, 3))
            elif "</think>" in text:  # the answer after budget forcing
                out.append(Sample("\\boxed{1}", "stop", 5, 1))
            else:
                answer = self.answers[next(q for q in self.answers if q in text)].pop(0)
                out.append(Sample(f"let me think</think>\\boxed{{{answer}}}", "stop", 5, 7,
                                  think_opened=True))
        return out


def test_metrics_pipeline_against_hand_computed_numbers(checkpoint, tmp_path, monkeypatch):
    answers = {"Half of one?": ["7", "0.5", "1/2", "\\frac{1}{2}"],  # c=3; raw vote: "7"
               "Two plus two?": ["4", "5", "5", "5"],  # c=1; maj@4 wrong
               "Five times two?": ["10", "3", "3", "3"]}  # c=1; maj@1, maj@2 (tie) right
    monkeypatch.setattr(runner, "make_generator", lambda spec, **kw: Scripted(answers))
    cfg = make_cfg(tmp_path, checkpoint, budgets=[])
    cfg.benchmarks[0].k = 4
    (result,) = json.loads((run_eval(cfg) / "results.json").read_text())["results"]
    per_problem = [3 / 4, 1 / 4, 1 / 4]
    assert result["pass@1"]["mean"] == pytest.approx(5 / 12)
    assert result["pass@1"]["se"] == pytest.approx(statistics.stdev(per_problem) / math.sqrt(3))

    def codex(n, c, k):  # the binomial form, exact
        return 1 - math.comb(n - c, k) / math.comb(n, k)

    for k in (1, 2, 4):
        assert result["pass@k"][str(k)] == pytest.approx(
            statistics.mean(codex(4, c, k) for c in (3, 1, 1)))
    assert result["maj@k"] == {"1": pytest.approx(2 / 3), "2": pytest.approx(2 / 3),
                               "4": pytest.approx(1 / 3)}
    assert result["format_adherence"] == 1.0 and result["eos_rate"] == 1.0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "41.7 ± 16.7" in report  # pass@1 = 5/12, se = 1/6 over the three problems
    assert f"{pct(result['pass@k']['4'])} (k=4)" in report and "33.3 (k=4)" in report


def test_choice_repeats_shuffle_options_and_vote_on_the_original_option(checkpoint, tmp_path,
                                                                        monkeypatch):
    class AlwaysA(Generator):
        backend = "engine"

        def _generate_flat(self, prompts, seeds, sampling, stop):
            return [Sample("hmm</think>\nAnswer: A", "stop", 3, 4, think_opened=True)] * len(prompts)

    monkeypatch.setattr(runner, "make_generator", lambda spec, **kw: AlwaysA())
    gpqa = REPO / "tests" / "evals" / "fixtures" / "gpqa.csv"
    cfg = make_cfg(tmp_path, checkpoint, budgets=[],
                   benchmarks=[BenchmarkSpec("gpqa", path=str(gpqa), k=8, limit=2)])
    (result,) = json.loads((run_eval(cfg) / "results.json").read_text())["results"]
    rows = read_rows(tmp_path / "out")
    assert [r["correct"] for r in rows] == [r["permutation"][0] == 0 for r in rows]  # 0 = gold
    expected = []
    for pid in dict.fromkeys(r["problem_id"] for r in rows):
        shown_first = [r["permutation"][0] for r in rows if r["problem_id"] == pid]
        assert len({tuple(r["permutation"]) for r in rows if r["problem_id"] == pid}) == 8
        winner = max(dict.fromkeys(shown_first), key=shown_first.count)  # first seen on ties
        expected.append(winner == 0)
    # "A" every time is eight answers, not one: a vote on letters would give sample 0's verdict.
    assert result["maj@k"]["8"] == sum(expected) / 2
    assert expected != [r["correct"] for r in rows if r["sample_index"] == 0]  # it matters here


def test_wait_extends_thinking_and_the_budget_still_holds():
    gen = Scripted({"q": ["x"]})
    sampling = SamplingParams()
    (s,) = force_budget(gen, ["q"], 100, sampling, seeds=[0], num_waits=2, answer_max_tokens=4)
    assert s.text == "<think>\nok ok okWaitok ok okWaitok ok ok</think>\\boxed{1}"
    assert s.reasoning_tokens == 3 * 3 + 2 * 1
    (s,) = force_budget(gen, ["q"], 4, sampling, seeds=[0], num_waits=2, answer_max_tokens=4)
    assert s.text.count("Wait") == 0 and s.reasoning_tokens == 3  # no room left for a Wait


def test_budget_sweep_curve():
    from evals.budget import budget_sweep
    from evals.types import Problem

    problems = [Problem("a", "q1", "1"), Problem("b", "q2", "2")]  # the scripted answer is 1
    curve = budget_sweep(Scripted({}), problems, [2, 50], k=2, num_waits=1)
    assert [p["budget"] for p in curve] == [2, 50]
    assert all(p["accuracy"] == 0.5 and p["num_samples"] == 4 for p in curve)
    assert curve[0]["mean_reasoning_tokens"] == 2  # cut at the budget, then `</think>` forced
    assert curve[1]["mean_reasoning_tokens"] == 3 + 1 + 3  # one Wait


def test_cli_run_from_yaml_reuses_the_cache_and_compare(first_run, counted, tmp_path, capsys):
    cfg, out = first_run
    recipe = tmp_path / "eval.yaml"
    bench = cfg.benchmarks[0]
    recipe.write_text(f"""
eval:
  models: [{{name: tiny, path: "{cfg.models[0].path}"}}]
  benchmarks:
    - {{name: jsonl, path: "{bench.path}", k: 2, field_map: {{question: q, reference: gold, id: uid}}}}
  sampling: {{max_new_tokens: 8}}
  budgets: [6]
  budget_answer_tokens: 4
  verify_workers: 1
  out_dir: "{out}"
""")
    assert main(["eval", "--config", str(recipe)]) == 0
    assert counted == {"samples": 0, "loads": 0}  # the YAML gives the same cache keys
    shutil.copytree(out, tmp_path / "copy")
    assert main(["eval", "run", "--config", str(recipe), "--set", f"out_dir={tmp_path / 'copy'}",
                 "--set", "sampling.max_new_tokens=4"]) == 0
    assert counted["samples"] == 6 + 6  # a sampling change regenerates (main and budget rows)
    capsys.readouterr()
    assert main(["eval", "compare", str(out), str(out), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| tiny | jsonl |") == 2
    assert (tmp_path / "cmp" / "compare.png").is_file()
    assert main(["eval"]) == 2


def test_tiny_recipe_loads():
    cfg = load_config(EvalConfig, REPO / "recipes" / "eval" / "tiny.yaml", section="eval")
    assert cfg.benchmarks[0].k == 2 and cfg.budgets == [16, 32]
    assert cfg.benchmarks[0].name.startswith("synthetic:arithmetic")


def test_tiny_recipe_runs_on_the_synthetic_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe's paths are relative to the working directory
    assert main(["model", "init", "--config", str(REPO / "recipes/model/tiny.yaml"),
                 "--out", "runs/models/tiny"]) == 0
    assert main(["eval", "--config", str(REPO / "recipes/eval/tiny.yaml"),
                 "--set", "sampling.max_new_tokens=12", "--set", "budgets=[8]"]) == 0
    (result,) = json.loads(Path("runs/eval/tiny/results.json").read_text())["results"]
    assert result["num_problems"] == 8 and result["samples_per_problem"] == 2
    assert result["benchmark"].startswith("synthetic:arithmetic")
    assert [p["budget"] for p in result["budget_curve"]] == [8]
    assert result["budget_curve"][0]["mean_reasoning_tokens"] <= 8


def test_vllm_backend_without_vllm_fails_before_generation(checkpoint, counted, tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    cfg = make_cfg(tmp_path, checkpoint, models=[ModelSpec("v", str(checkpoint), backend="vllm")])
    with pytest.raises(ValueError, match="models\\[0\\] \\(v\\): backend vllm needs vLLM"):
        run_eval(cfg)
    assert counted == {"samples": 0, "loads": 0}


def test_openai_backend_request_and_reasoning_content(monkeypatch):
    import httpx

    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        message = {"content": "\\boxed{4}", "reasoning_content": "2+2=4"}
        return httpx.Response(200, json={
            "choices": [{"message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12,
                      "completion_tokens_details": {"reasoning_tokens": 5}}})

    monkeypatch.setenv("TEST_KEY", "secret")
    gen = make_generator(ModelSpec("api", "served-model", backend="openai",
                                   base_url="http://localhost:1/v1", api_key_env="TEST_KEY"))
    gen.client = httpx.Client(transport=httpx.MockTransport(handler),
                              headers=gen.client.headers)
    (samples,) = gen.generate(["2+2?"], 2, SamplingParams(max_new_tokens=32, seed=3))
    assert [s.text for s in samples] == ["<think>\n2+2=4\n</think>\n\n\\boxed{4}"] * 2
    assert samples[0].reasoning_tokens == 5 and samples[0].completion_tokens == 12
    assert seen[0]["messages"] == [{"role": "user", "content": "2+2?"}]
    assert seen[0]["model"] == "served-model" and seen[0]["max_tokens"] == 32
    assert (seen[0]["temperature"], seen[0]["top_p"]) == (0.6, 0.95)  # DeepSeek-R1 protocol
    assert seen[0]["seed"] != seen[1]["seed"]  # one seed per sample
    assert gen.client.headers["Authorization"] == "Bearer secret"


def test_transformers_backend_matches_the_engine_greedily(checkpoint):
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}], "a longer plain-text prompt here"]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    texts = {}
    for backend, batch_size in (("engine", 1), ("transformers", 2)):  # 2: left padding in play
        gen = make_generator(ModelSpec(backend, str(checkpoint), backend=backend,
                                       batch_size=batch_size))
        samples = [s for (s,) in gen.generate(prompts, 1, greedy)]
        texts[backend] = [(s.text, s.completion_tokens, s.think_opened) for s in samples]
        gen.close()
    assert texts["engine"] == texts["transformers"]
    assert [opened for *_, opened in texts["engine"]] == [True, False]
