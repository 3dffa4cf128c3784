"""`distillery generate`: problems, templates, the row contract, resume, bad input, on a tiny
random teacher (engine and transformers backends)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from distill.cli import main
from distill.generate import GenerateConfig, PromptConfig, load_problems, run_generate
from distill.generate.templates import Template
from evals.config import ModelSpec, SamplingParams
from evals.store import RowStore
from evals.types import Problem
from tests.distill.teacher import make_teacher, read_rows, write_jsonl

REPO = Path(__file__).resolve().parents[2]
R1 = "Please reason step by step, and put your final answer within \\boxed{}."
PROBLEMS = [{"uid": "a", "q": "One plus one?", "gold": "2"},
            {"uid": "b", "q": "Two times three?", "gold": "6"},
            {"uid": "c", "q": "Ten minus four?", "gold": "6"}]
FIELD_MAP = {"problem": "q", "reference": "gold", "id": "uid"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher") / "tiny")


def config(tmp_path, ckpt, **overrides) -> GenerateConfig:
    problems = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
    values = dict(problems=str(problems), field_map=FIELD_MAP,
                  teacher=ModelSpec("tiny", str(ckpt), batch_size=4),
                  sampling=SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=12, seed=3),
                  n=2, out_dir=str(tmp_path / "out"), shard_rows=4)
    values.update(overrides)
    return GenerateConfig(**values)


# -- problems ------------------------------------------------------------------------------------

def test_public_schemas_load_without_a_field_map(tmp_path):
    numina = write_jsonl(tmp_path / "numina.jsonl", [
        {"problem": "Find x.", "solution": "... so \\boxed{3}.", "answer": "3"}])
    gsm8k = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "How many?", "answer": "5 + 7 = 12\n#### 1,200"}])
    math = write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "Simplify.", "solution": "We get $\\boxed{\\frac{1}{2}}$.", "unique_id": "m/1"}])
    aime = write_jsonl(tmp_path / "aime.jsonl", [{"ID": "2024-I-1", "Problem": "P?", "Answer": 42}])
    tests = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
    code = write_jsonl(tmp_path / "code.jsonl", [
        {"question": "Add two numbers.", "input_output": json.dumps(tests), "problem_id": 7}])

    (p,) = load_problems(str(numina))
    assert (p.question, p.reference, p.kind) == ("Find x.", "3", "math")
    assert p.id.startswith("p-") and len(p.id) == 14  # content hash: no id column
    (p,) = load_problems(str(gsm8k))
    assert (p.reference, p.kind) == ("1200", "math")
    (p,) = load_problems(str(math))
    assert (p.id, p.reference) == ("m/1", "\\frac{1}{2}")
    (p,) = load_problems(str(aime))
    assert (p.id, p.question, p.reference) == ("2024-I-1", "P?", "42")
    (p,) = load_problems(str(code))
    assert (p.id, p.kind, json.loads(p.reference)) == ("7", "code", tests)
    synth = write_jsonl(tmp_path / "synth.jsonl", [  # `distillery data synth` rows
        {"id": "s1", "question": "2+2?", "reference": "4", "kind": "math", "text": "..."}])
    (p,) = load_problems(str(synth), {"problem": "question"})  # the rest is detected
    assert (p.id, p.question, p.reference, p.kind) == ("s1", "2+2?", "4", "math")


def test_parquet_datasets_dir_synthetic_and_benchmark_specs(tmp_path):
    import datasets

    rows = [{"problem": f"Q{i}", "answer": str(i)} for i in range(3)]
    data = datasets.Dataset.from_list(rows)
    data.to_parquet(str(tmp_path / "p.parquet"))
    data.save_to_disk(str(tmp_path / "dir"))
    for spec in (tmp_path / "p.parquet", tmp_path / "dir"):
        assert [(p.question, p.reference) for p in load_problems(str(spec))] == \
            [(r["problem"], r["answer"]) for r in rows]
    synthetic = load_problems("synthetic:arithmetic?n=3&difficulty=1")
    assert len(synthetic) == 3 and all("-train-" in p.id for p in synthetic)
    gsm = load_problems(f"gsm8k:{REPO / 'tests/evals/fixtures/gsm8k.jsonl'}", limit=2)
    assert len(gsm) == 2 and gsm[0].id.startswith("gsm8k-")


def test_bad_problem_files_name_the_row(tmp_path):
    missing = write_jsonl(tmp_path / "m.jsonl", [{"q": "x", "gold": "1", "uid": "a"},
                                                 {"q": "y", "uid": "b"}])
    with pytest.raises(ValueError, match=r"m.jsonl: line 2: missing field 'gold'"):
        load_problems(str(missing), FIELD_MAP)
    dupes = write_jsonl(tmp_path / "d.jsonl", [{"q": "x", "gold": "1", "uid": "a"},
                                               {"q": "y", "gold": "2", "uid": "b"},
                                               {"q": "z", "gold": "3", "uid": "a"}])
    with pytest.raises(ValueError, match=r"line 3: duplicate problem id 'a', first at .*line 1"):
        load_problems(str(dupes), FIELD_MAP)
    no_id = write_jsonl(tmp_path / "n.jsonl", [{"q": "x", "gold": "1", "uid": "a"},
                                               {"q": "y", "gold": "2"}])
    with pytest.raises(ValueError, match=r"line 2: missing field 'uid'"):
        load_problems(str(no_id), FIELD_MAP)
    same_text = write_jsonl(tmp_path / "s.jsonl", [{"problem": "x", "answer": "1"},
                                                   {"problem": "x", "answer": "1"}])
    with pytest.raises(ValueError, match="same problem text; dedupe"):
        load_problems(str(same_text))
    with pytest.warns(UserWarning, match="dropped"):
        assert len(load_problems(str(same_text), dedupe=True)) == 1
    with pytest.raises(ValueError, match="cannot tell the schema.*field_map"):
        load_problems(str(missing))
    with pytest.raises(ValueError, match="field_map key 'gold'"):
        load_problems(str(missing), {"problem": "q", "gold": "gold"})
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_problems(str(tmp_path / "nope.jsonl"))


# -- templates -----------------------------------------------------------------------------------

def test_templates_r1_v3_l1_and_file(tmp_path):
    p = Problem("p1", "What is 2+2?", "4")
    messages, info = Template(PromptConfig()).build(p, 0, 0)
    assert messages == [{"role": "user", "content": "What is 2+2?\n" + R1}]  # no system prompt
    assert (info["name"], info["variant"]) == ("r1", "plain")

    v3 = Template(PromptConfig(template="v3"))
    plain, reflect = v3.build(p, 0, 0), v3.build(p, 1, 0)
    assert plain[0] == messages and plain[1]["variant"] == "plain"
    assert reflect[0][0]["role"] == "system" and "verif" in reflect[0][0]["content"]
    assert reflect[0][1:] == messages and reflect[1]["variant"] == "reflect"

    l1 = Template(PromptConfig(template="l1", length_budgets=[128, 256], length_mode="max"))
    budgets = set()
    for j in range(20):
        (m,), info = l1.build(p, j, 0)
        assert m["content"] == f"What is 2+2?\n{R1} Think for maximum {info['budget']} tokens."
        budgets.add(info["budget"])
        assert l1.build(p, j, 0)[1]["budget"] == info["budget"]  # seeded, stable
    assert budgets == {128, 256}
    exact = Template(PromptConfig(template="l1", length_range=[100, 4000]))
    (m,), info = exact.build(p, 0, 0)
    assert m["content"].endswith(f" Think for {info['budget']} tokens.")
    assert 100 <= info["budget"] <= 4000

    file = tmp_path / "t.yaml"
    file.write_text(yaml.safe_dump({"name": "terse", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "[{id}] {problem}\n{instruction}"}]}))
    messages, info = Template(PromptConfig(template="file", file=str(file))).build(p, 0, 0)
    assert messages == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "[p1] What is 2+2?\n" + R1}]
    assert info["name"] == "terse"
    file.write_text(yaml.safe_dump({"messages": [{"role": "user", "content": "{problme}"}]}))
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['problme'\]"):
        Template(PromptConfig(template="file", file=str(file)))
    with pytest.raises(ValueError, match="exactly one of length_budgets"):
        PromptConfig(template="l1")


# -- the run -------------------------------------------------------------------------------------

def test_rows_follow_the_contract_and_seeds_are_per_sample(tmp_path, teacher):
    from transformers import AutoTokenizer

    out = run_generate(config(tmp_path, teacher))
    rows = read_rows(out / "samples")
    assert sorted(rows) == [(u, j) for u in "abc" for j in range(2)]
    assert len(list((out / "samples").glob("part-*.jsonl"))) == 2  # 6 rows, 4 per shard
    tok = AutoTokenizer.from_pretrained(teacher)
    for (pid, j), row in rows.items():
        problem = next(p for p in PROBLEMS if p["uid"] == pid)
        assert row["id"] == f"{pid}/{j}" and row["reference"] == problem["gold"]
        assert row["prompt"] == [{"role": "user", "content": problem["q"] + "\n" + R1}]
        # the R1 template opens <think> in the prompt: everything generated is reasoning until
        # a `</think>`; the split must agree with the raw completion
        assert row["think_opened"] is True
        closed = "</think>" in row["completion"]
        assert row["think_closed"] == closed
        if not closed:
            assert row["reasoning"] == row["completion"].strip() and row["answer_text"] == ""
        rendered = tok.apply_chat_template(row["prompt"], add_generation_prompt=True,
                                           tokenize=False, enable_thinking=True)
        assert row["prompt_tokens"] == len(tok.encode(rendered, add_special_tokens=False))
        assert 1 <= row["completion_tokens"] <= 12
        assert row["teacher"]["backend"] == "engine" and row["teacher"]["path"] == str(teacher)
        assert row["teacher"]["sampling"]["temperature"] == 1.0
        assert row["teacher"]["template"]["name"] == "r1"
    assert len({r["teacher"]["seed"] for r in rows.values()}) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 6 and summary["missing_rows"] == 0
    assert summary["tokens"]["completion"] == sum(r["completion_tokens"] for r in rows.values())
    assert sum(summary["finish_reasons"].values()) == 6

    # the same rows, generated one sample per call: every row's tokens come from its own seed,
    # not from its batch
    alone = run_generate(config(tmp_path, teacher, out_dir=str(tmp_path / "alone"),
                                teacher=ModelSpec("tiny", str(teacher), batch_size=1)))
    assert {k: r["completion"] for k, r in read_rows(alone / "samples").items()} == \
        {k: r["completion"] for k, r in rows.items()}


def test_interrupted_run_resumes_to_the_same_rows(tmp_path, teacher, monkeypatch):
    full = read_rows(run_generate(config(tmp_path, teacher, out_dir=str(tmp_path / "full")))
                     / "samples")
    cfg = config(tmp_path, teacher, out_dir=str(tmp_path / "cut"))
    append, calls = RowStore.append, {"n": 0}

    def dying_append(self, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # a crash between two rows
        return append(self, rows)

    monkeypatch.setattr(RowStore, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        run_generate(cfg)
    monkeypatch.setattr(RowStore, "append", append)
    assert len(read_rows(Path(cfg.out_dir) / "samples")) == 3
    # a writer killed mid-line leaves a cut tail: repaired, and its row redone
    shard = sorted((Path(cfg.out_dir) / "samples").glob("part-*.jsonl"))[-1]
    with open(shard, "a") as f:
        f.write('{"id": "c/1", "problem_')
    with pytest.warns(UserWarning, match="incomplete last row"):
        run_generate(cfg)
    resumed = read_rows(Path(cfg.out_dir) / "samples")
    assert {k: r["completion"] for k, r in resumed.items()} == \
        {k: r["completion"] for k, r in full.items()}


def test_resume_refuses_rows_of_another_teacher_or_prompt(tmp_path, teacher):
    run_generate(config(tmp_path, teacher, n=1))
    hotter = config(tmp_path, teacher, n=1,
                    sampling=SamplingParams(temperature=0.9, max_new_tokens=12, seed=3))
    with pytest.raises(ValueError, match="another teacher or sampling"):
        run_generate(hotter)
    with pytest.raises(ValueError, match="another prompt"):
        run_generate(config(tmp_path, teacher, n=1, prompt=PromptConfig(system_prompt="Hi.")))


def test_engine_and_transformers_backends_agree_greedily(tmp_path, teacher):
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    engine = read_rows(run_generate(config(tmp_path, teacher, n=1, sampling=greedy,
                                           out_dir=str(tmp_path / "e"))) / "samples")
    hf = read_rows(run_generate(config(
        tmp_path, teacher, n=1, sampling=greedy, out_dir=str(tmp_path / "t"),
        teacher=ModelSpec("tiny", str(teacher), backend="transformers", batch_size=1)))
        / "samples")
    assert {k: r["completion"] for k, r in hf.items()} == \
        {k: r["completion"] for k, r in engine.items()}
    assert all(r["teacher"]["backend"] == "transformers" for r in hf.values())


def test_v3_budget_forcing_and_export(tmp_path, teacher):
    cfg = config(tmp_path, teacher, prompt=PromptConfig(template="v3"), budget=6,
                 budget_answer_tokens=3, export=["parquet", "datasets"])
    out = run_generate(cfg)
    rows = read_rows(out / "samples")
    assert {r["teacher"]["template"]["variant"] for r in rows.values()} == {"plain", "reflect"}
    for (pid, j), row in rows.items():
        assert (row["prompt"][0]["role"] == "system") == (j == 1)
        assert row["reasoning_tokens"] <= 6 and row["think_closed"]  # forced `</think>`
        assert row["teacher"]["budget_forcing"]["budget"] == 6
    import datasets

    table = datasets.load_dataset("parquet", data_files=str(out / "samples.parquet"))["train"]
    assert sorted(table["id"]) == sorted(r["id"] for r in rows.values())
    assert len(datasets.load_from_disk(str(out / "samples_dataset"))) == 6


def test_cli_bad_input_fails_before_work(tmp_path, teacher, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"generate": {"problems": str(tmp_path / "none.jsonl"),
                                                   "teacher": {"name": "t", "path": str(teacher)},
                                                   "out_dir": str(tmp_path / "o")}}))
    assert main(["generate", "--config", str(recipe)]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err
    assert main(["generate", "--config", str(recipe), "--set", "teacher.path=/no/model"]) == 2
    assert "/no/model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- kill -9 -------------------------------------------------------------------------------------

def _cli(recipe: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from distill.cli import main; sys.exit(main())",
            "generate", "--config", str(recipe)]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tmp_path, teacher):
    """`distillery generate` killed with SIGKILL several times while it writes, then run to
    the end: the rows equal an uninterrupted run's, none lost, none twice."""
    problems = write_jsonl(tmp_path / "problems.jsonl",
                           [{"uid": f"q{i}", "q": f"What is {i} + {i}?", "gold": str(2 * i)}
                            for i in range(12)])
    base = {"problems": str(problems), "field_map": FIELD_MAP, "n": 2, "shard_rows": 5,
            "teacher": {"name": "tiny", "path": str(teacher), "batch_size": 2},
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24, "seed": 1}}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    recipes = {}
    for name in ("full", "killed"):
        recipes[name] = tmp_path / f"{name}.yaml"
        recipes[name].write_text(yaml.safe_dump(
            {"generate": {**base, "out_dir": str(tmp_path / name)}}))
    subprocess.run(_cli(recipes["full"]), env=env, check=True, capture_output=True)
    full = read_rows(tmp_path / "full" / "samples")
    assert len(full) == 24

    rng, kills = random.Random(0), 0
    samples = tmp_path / "killed" / "samples"
    for attempt in range(8):
        before = sum(len(s.read_bytes().splitlines()) for s in samples.glob("part-*.jsonl"))
        proc = subprocess.Popen(_cli(recipes["killed"]), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None:  # wait for this run's first row, then a random moment
            now = sum(len(s.read_bytes().splitlines()) for s in samples.glob("part-*.jsonl"))
            if now > before:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if kills == 4:
            break
    assert kills >= 2, "the runs finished before they could be killed; make them longer"
    subprocess.run(_cli(recipes["killed"]), env=env, check=True, capture_output=True)
    resumed = read_rows(samples)  # asserts no key is written twice
    assert sorted(resumed) == sorted(full)
    assert {k: r["completion"] for k, r in resumed.items()} == \
        {k: r["completion"] for k, r in full.items()}


# -- vllm plumbing (vLLM itself cannot run on this CPU machine) ------------------------------------

class _FakeVLLM:
    """Stands in for the vllm module: records LLM(...) arguments and requests, answers with
    n outputs per request whose text names the request's seed and output index."""

    calls: list = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            _FakeVLLM.calls.append(("LLM", kwargs))

        def generate(self, requests, params, use_tqdm=True):
            from types import SimpleNamespace as NS

            _FakeVLLM.calls.append(("generate", [p.__dict__ for p in params]))
            return [NS(prompt_token_ids=r["prompt_token_ids"], outputs=[
                NS(text=f"seed{p.seed}/{k}", finish_reason="stop", token_ids=[1, 2])
                for k in range(p.n)]) for r, p in zip(requests, params)]


def test_vllm_options_pass_through_and_n_per_request_groups(teacher, monkeypatch):
    from evals.generation import make_generator

    monkeypatch.setitem(sys.modules, "vllm", _FakeVLLM)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    _FakeVLLM.calls.clear()
    spec = ModelSpec("v", str(teacher), backend="vllm",
                     options={"tensor_parallel_size": 2, "n_per_request": True})
    gen = make_generator(spec)
    assert _FakeVLLM.calls[0] == ("LLM", {"model": str(teacher), "dtype": "auto",
                                          "tensor_parallel_size": 2})
    prompts = ["a", "a", "a", "b", "b"]
    out = dict(gen.iter_generate(prompts, [10, 11, 12, 20, 21], SamplingParams(top_k=0)))
    assert [out[i].text for i in range(5)] == ["seed10/0", "seed10/1", "seed10/2",
                                                "seed20/0", "seed20/1"]
    params = _FakeVLLM.calls[-1][1]
    assert [(p["n"], p["seed"], p["top_k"]) for p in params] == [(3, 10, -1), (2, 20, -1)]
    gen.n_per_request = False
    out = gen.generate(["a", "b"], 2, SamplingParams(), seeds=[[1, 2], [3, 4]])
    assert [[s.text for s in row] for row in out] == [["seed1/0", "seed2/0"], ["seed3/0", "seed4/0"]]


def test_recipes_load():
    from recipes.config import load_config

    for path in sorted((REPO / "recipes" / "generate").glob("*.yaml")):
        cfg = load_config(GenerateConfig, path, [], section="generate")
        assert cfg.problems and cfg.teacher.path, path


def test_hostile_server_text_is_stored_or_marked():
    from evals.openai_client import OpenAIGenerator

    gen = OpenAIGenerator("m", "http://127.0.0.1:9/v1", api_key_env=None, on_error="mark")
    body = json.loads('{"choices": [{"message": {"content": "ok \\ud800 end", '
                      '"reasoning_content": "hm"}, "finish_reason": "stop"}], "usage": {}}')
    sample = gen._parse(body, ())
    assert sample.text == "<think>\nhm\n</think>\n\nok ? end"
    json.dumps(sample.text, ensure_ascii=False).encode("utf-8")  # storable
    cut = gen._parse({"choices": [{"message": {"reasoning_content": "never done"},
                                   "finish_reason": "length"}]}, ())
    assert cut.text == "<think>\nnever done" and cut.finish_reason == "length"
    gen.close()
