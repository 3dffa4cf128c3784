"""`distillery serve` against independent references: the engine called directly with the same
seeds, the `openai` package as a second client, and the hardened openai backend against every
injected fault. Servers are real (uvicorn over HTTP): in a thread for the fast tests, and
`distillery serve` as a subprocess for the end-to-end ones (marked slow)."""

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from distill.generate import GenerateConfig, run_generate
from distill.serve.app import Server, ServeConfig, create_app
from distill.serve.protocol import StreamText, split_reasoning
from evals.config import ModelSpec, SamplingParams
from evals.generation import sample_seed
from evals.openai_client import OpenAIGenerator
from tests.distill.servers import ServeProcess, ServeThread, free_port
from tests.distill.teacher import make_teacher, read_rows, write_jsonl

PROBLEMS = [{"uid": f"q{i}", "q": f"What is {i} + 1?", "gold": str(i + 1)} for i in range(4)]
FIELD_MAP = {"problem": "q", "reference": "gold", "id": "uid"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def server(teacher):
    s = Server(ServeConfig(model=str(teacher), max_batch=8))
    yield s
    s.batcher.stop()


@pytest.fixture(scope="module")
def http(server):
    t = ServeThread(create_app(server.cfg, server))
    yield t
    t.stop()


def faulty(server, *faults, **options):
    cfg = ServeConfig(model=server.cfg.model, faults=list(faults), **options)
    return ServeThread(create_app(cfg, server))


def engine_texts(server, prompt_ids, seeds, max_tokens, stop=()):
    result = server.generator.engine.generate([prompt_ids] * len(seeds), max_new_tokens=max_tokens,
                                              temperature=1.0, top_p=1.0, seed=list(seeds),
                                              stop_strings=stop)
    return result


def chat_ids(server, content):
    text = server.tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                                add_generation_prompt=True, tokenize=False,
                                                enable_thinking=True)
    return server.generator.encode(text)


# -- the wire format against the engine -------------------------------------------------------

def test_chat_n_seed_usage_match_the_engine(http, server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi there"}], "n": 3,
            "seed": 11, "max_tokens": 9, "temperature": 1.0}
    data = httpx.post(http.url + "/chat/completions", json=body, timeout=60).json()
    ids = chat_ids(server, "Hi there")
    ref = engine_texts(server, ids, [11, sample_seed(11, 1), sample_seed(11, 2)], 9)
    assert [c["message"]["content"] for c in data["choices"]] == ref.text
    assert [c["finish_reason"] for c in data["choices"]] == ref.finish_reason
    assert data["usage"] == {"prompt_tokens": len(ids),
                             "completion_tokens": sum(len(t) for t in ref.tokens),
                             "total_tokens": len(ids) + sum(len(t) for t in ref.tokens)}


def test_completions_stop_string_left_out(http, server):
    ids = server.generator.encode("abc")
    free = engine_texts(server, ids, [5], 24)
    text = free.text[0]
    stop = text[3:5] if len(text) >= 5 else None
    if not stop or "\ufffd" in stop:
        pytest.skip("the random model's text has no clean two-character stop candidate")
    data = httpx.post(http.url + "/completions", timeout=60, json={
        "prompt": "abc", "max_tokens": 24, "seed": 5, "temperature": 1.0, "stop": [stop]}).json()
    choice = data["choices"][0]
    assert choice["text"] == text[:text.find(stop)]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", stop)


def test_streaming_deltas_add_up_to_the_full_answer(http):
    body = {"messages": [{"role": "user", "content": "Stream me"}], "n": 2, "seed": 3,
            "max_tokens": 12, "temperature": 1.0}
    full = httpx.post(http.url + "/chat/completions", json=body, timeout=60).json()
    parts, finish, usage = {0: "", 1: ""}, {}, None
    with httpx.stream("POST", http.url + "/chat/completions", timeout=60,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line.removeprefix("data: "))
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk["choices"]:
            parts[c["index"]] += c["delta"].get("content") or ""
            if c["finish_reason"]:
                finish[c["index"]] = c["finish_reason"]
    assert parts == {c["index"]: c["message"]["content"] for c in full["choices"]}
    assert finish == {c["index"]: c["finish_reason"] for c in full["choices"]}
    assert usage == full["usage"]


def test_reasoning_split_streamed_token_by_token(server):
    tok = server.tokenizer
    text = "Let me think.\nIt is 4.\n</think>\n\nThe answer is \\boxed{4}."
    ids = tok.encode(text, add_special_tokens=False)
    stream = StreamText(tok, (), split=True, opened=True)
    got = {"reasoning_content": "", "content": ""}
    for i, t in enumerate(ids):
        for field, piece in stream.push([t], final=i == len(ids) - 1):
            got[field] += piece
    assert got == {"reasoning_content": "Let me think.\nIt is 4.",
                   "content": "The answer is \\boxed{4}."}
    assert split_reasoning(text, opened=True) == ("Let me think.\nIt is 4.",
                                                  "The answer is \\boxed{4}.")
    assert split_reasoning("<think>\nhm</think>ok", opened=False) == ("hm", "ok")
    assert split_reasoning("never closed", opened=True) == ("never closed", "")
    assert split_reasoning("plain", opened=False) == (None, "plain")


def test_bad_requests_get_openai_errors(http):
    post = lambda body: httpx.post(http.url + "/chat/completions", json=body, timeout=30)
    r = post({"messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = post({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})
    assert r.status_code == 400 and "temperature" in r.json()["error"]["message"]
    r = post({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and "tiny" in r.json()["error"]["message"]
    r = httpx.post(http.url + "/completions", content=b"{nope", timeout=30)
    assert r.status_code == 400


def test_full_queue_answers_429(server):
    cfg = ServeConfig(model=server.cfg.model, max_batch=1, max_queue=1, retry_after_s=2)
    own = Server.__new__(Server)  # the loaded model, behind a batcher of its own
    own.__dict__.update(server.__dict__, cfg=cfg)
    from distill.serve.batcher import Batcher

    own.batcher = Batcher(own._run_batch, 1, 1)
    t = ServeThread(create_app(cfg, own))
    body = {"messages": [{"role": "user", "content": "long"}], "max_tokens": 150,
            "temperature": 1.0}
    statuses, headers = [], []

    def call():
        r = httpx.post(t.url + "/chat/completions", json=body, timeout=120)
        statuses.append(r.status_code)
        headers.append(r.headers.get("retry-after"))

    threads = [threading.Thread(target=call) for _ in range(5)]
    try:
        for th in threads:
            th.start()
            time.sleep(0.05)
        for th in threads:
            th.join()
    finally:
        t.stop()
        own.batcher.stop()
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1, statuses
    assert all(h == "2" for s, h in zip(statuses, headers) if s == 429)


# -- the openai backend against each fault ----------------------------------------------------

def client(url, **options):
    defaults = dict(on_error="mark", max_retries=1, backoff_s=0.0, timeout_s=30.0)
    return OpenAIGenerator("tiny", url, api_key_env=None, **{**defaults, **options})


SAMPLING = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=4)


@pytest.mark.parametrize("fault, cause, options", [
    ("500", "http_5xx", {}),
    ("drop", "connection", {}),
    ("garbage", "bad_response", {}),
    ("slow", "timeout", {"timeout_s": 0.5}),
])
def test_each_fault_is_retried_then_marked_with_its_cause(server, fault, cause, options):
    t = faulty(server, fault, fault_delay_s=3.0)
    try:
        gen = client(t.url, **options)
        (sample,) = gen._generate_flat(["hi"], [1], SAMPLING, ())
        counts = httpx.get(t.base + "/health").json()["faults"]
    finally:
        t.stop()
    assert sample.finish_reason == "error" and sample.error.startswith(cause + ":"), sample.error
    assert counts == {fault: 2}  # the first try and one retry
    assert gen.retries == 1


def test_429_retry_after_is_honoured_and_the_budget_caps_requests(server):
    t = faulty(server, "429", retry_after_s=0.4)
    try:
        start = time.monotonic()
        (sample,) = client(t.url, max_retries=2)._generate_flat(["hi"], [1], SAMPLING, ())
        waited = time.monotonic() - start
    finally:
        t.stop()
    assert sample.error.startswith("http_429:")
    assert waited >= 2 * 0.4  # backoff_s=0: only Retry-After can make it wait
    t = faulty(server, "429", retry_after_s=0)
    try:
        samples = client(t.url, max_retries=10, max_requests=3)._generate_flat(
            ["a", "b"], [1, 2], SAMPLING, ())
        counts = httpx.get(t.base + "/health").json()["faults"]
    finally:
        t.stop()
    assert counts == {"429": 3}  # the budget, retries included, across both samples
    assert [s.error.split(":")[0] for s in samples] == ["budget", "budget"]


def test_a_4xx_is_not_retried_and_raise_mode_raises(http):
    gen = client(http.url, max_retries=5)
    gen.model = "someone-else"  # the server answers 404
    (sample,) = gen._generate_flat(["hi"], [1], SAMPLING, ())
    assert sample.error.startswith("http_4xx: HTTP 404") and gen.retries == 0
    strict = client(http.url, on_error="raise")
    strict.model = "someone-else"
    with pytest.raises(RuntimeError, match="HTTP 404"):
        strict.generate(["hi"], 1, SAMPLING)


# -- generate over HTTP -------------------------------------------------------------------------

def gen_config(tmp_path, url, name, **teacher):
    problems = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
    return GenerateConfig(
        problems=str(problems), field_map=FIELD_MAP, n=2, out_dir=str(tmp_path / name),
        sampling=SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=10, seed=4),
        teacher=ModelSpec("tiny", "tiny", backend="openai", base_url=url, **teacher))


def test_generate_over_openai_equals_the_engine_backend(tmp_path, http, teacher):
    served = run_generate(gen_config(tmp_path, http.url, "served"))
    local_cfg = gen_config(tmp_path, http.url, "local")
    local_cfg.teacher = ModelSpec("tiny", str(teacher), batch_size=4)
    local = run_generate(local_cfg)
    a, b = read_rows(served / "samples"), read_rows(local / "samples")
    assert {k: r["completion"] for k, r in a.items()} == {k: r["completion"] for k, r in b.items()}
    assert {k: r["completion_tokens"] for k, r in a.items()} == \
        {k: r["completion_tokens"] for k, r in b.items()}
    assert all(r["teacher"]["backend"] == "openai" for r in a.values())


def test_unreachable_endpoint_fails_before_work(tmp_path):
    cfg = gen_config(tmp_path, f"http://127.0.0.1:{free_port()}/v1", "dead",
                     options={"max_retries": 1, "backoff_s": 0.0})
    with pytest.raises(ValueError, match=r"openai endpoint http://127.0.0.1:\d+/v1: connection"):
        run_generate(cfg)
    assert not list((tmp_path / "dead").glob("samples/*.jsonl"))


def test_failed_samples_are_recorded_and_redone_by_the_next_run(tmp_path, server, http):
    t = faulty(server, "500")
    cfg = gen_config(tmp_path, t.url, "out", options={"max_retries": 0})
    try:
        out = run_generate(cfg)
    finally:
        t.stop()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["failures"] == {"http_5xx": 8} and summary["rows"] == 0
    assert len((out / "failures.jsonl").read_text().splitlines()) == 8
    cfg.teacher.base_url = http.url
    summary = json.loads((run_generate(cfg) / "summary.json").read_text())
    assert summary["rows"] == 8 and summary["run"]["failed_samples"] == 0


def test_api_key_from_the_env_is_sent_and_never_written(tmp_path, server, monkeypatch, capfd):
    secret = "sk-test-" + "x7" * 12
    monkeypatch.setenv("TEACHER_KEY", secret)
    cfg = ServeConfig(model=server.cfg.model, api_key_env="TEACHER_KEY")
    t = ServeThread(create_app(cfg, server))
    try:
        assert httpx.get(t.url + "/models").status_code == 401
        out = run_generate(gen_config(tmp_path, t.url, "keyed", api_key_env="TEACHER_KEY"))
        monkeypatch.setenv("WRONG_KEY", "sk-wrong")
        with pytest.raises(ValueError, match="HTTP 401"):
            run_generate(gen_config(tmp_path, t.url, "wrong", api_key_env="WRONG_KEY"))
    finally:
        t.stop()
    assert json.loads((out / "summary.json").read_text())["rows"] == 8
    captured = capfd.readouterr()
    assert secret not in captured.out + captured.err
    for path in Path(tmp_path).rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


# -- distillery serve as a subprocess --------------------------------------------------------

@pytest.mark.slow
def test_openai_package_against_distillery_serve(teacher, server):
    openai = pytest.importorskip("openai")
    proc = ServeProcess(teacher, "--split-reasoning")
    try:
        api = openai.OpenAI(base_url=proc.url, api_key="unused", max_retries=0)
        assert [m.id for m in api.models.list().data] == ["tiny"]
        ids = chat_ids(server, "Hello")
        ref = engine_texts(server, ids, [21, sample_seed(21, 1)], 8)
        chat = api.chat.completions.create(model="tiny", n=2, seed=21, max_tokens=8,
                                           temperature=1.0,
                                           messages=[{"role": "user", "content": "Hello"}])
        for choice, text in zip(chat.choices, ref.text):
            reasoning, content = split_reasoning(text, opened=True)
            assert (choice.message.reasoning_content, choice.message.content) == \
                (reasoning, content)
        assert chat.usage.completion_tokens == sum(len(t) for t in ref.tokens)
        stream = api.chat.completions.create(model="tiny", seed=21, max_tokens=8, stream=True,
                                             temperature=1.0,
                                             messages=[{"role": "user", "content": "Hello"}])
        pieces = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                  for c in stream if c.choices]
        assert "".join(pieces) == split_reasoning(ref.text[0], opened=True)[0]
        plain = api.completions.create(model="tiny", prompt="abc", max_tokens=6, seed=2,
                                       temperature=1.0, n=2)
        ref = engine_texts(server, server.generator.encode("abc"), [2, sample_seed(2, 1)], 6)
        assert [c.text for c in plain.choices] == ref.text
    finally:
        code, err = proc.stop()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_generate_through_every_fault_equals_a_clean_run(tmp_path, teacher, http):
    # fault seed 6 draws every kind within this run's ~20 requests (the draws are a fixed
    # sequence: which request gets which fault varies with arrival order, the set does not)
    proc = ServeProcess(teacher, "--fault", "slow:0.15", "--fault", "429:0.2", "--fault",
                        "500:0.15", "--fault", "drop:0.15", "--fault", "garbage:0.15",
                        "--fault-delay", "3", "--retry-after", "0.05", "--fault-seed", "6")
    try:
        options = {"max_retries": 12, "backoff_s": 0.01, "timeout_s": 1.5, "concurrency": 4}
        faulty_out = run_generate(gen_config(tmp_path, proc.url, "faulty", options=options))
        counts = proc.health()["faults"]
    finally:
        code, err = proc.stop()
    clean = run_generate(gen_config(tmp_path, http.url, "clean"))
    assert set(counts) == {"429", "500", "drop", "garbage", "slow"}, counts
    summary = json.loads((faulty_out / "summary.json").read_text())
    assert summary["rows"] == 8 and summary["run"]["failed_samples"] == 0
    assert summary["run"]["retries"] >= sum(counts.values()) - counts.get("slow", 0)
    a, b = read_rows(faulty_out / "samples"), read_rows(clean / "samples")
    assert {k: r["completion"] for k, r in a.items()} == {k: r["completion"] for k, r in b.items()}
    assert code in (0, -signal.SIGTERM) and "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(teacher):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status may be -15."""
    proc = ServeProcess(teacher)
    result = {}

    def call():
        result["r"] = httpx.post(proc.url + "/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "x"}], "max_tokens": 300})

    th = threading.Thread(target=call)
    th.start()
    time.sleep(1.0)
    proc.proc.send_signal(signal.SIGTERM)
    th.join()
    code, err = proc.stop()
    assert result["r"].status_code == 200
    assert result["r"].json()["usage"]["completion_tokens"] >= 1
    assert code in (0, -signal.SIGTERM) and "Traceback" not in err, err[-2000:]


def test_transformers_backend_serves_the_same_greedy_text(teacher, server):
    hf = Server(ServeConfig(model=str(teacher), backend="transformers"))
    t = ServeThread(create_app(hf.cfg, hf))
    try:
        body = {"messages": [{"role": "user", "content": "Greedy please"}], "max_tokens": 8,
                "temperature": 0.0, "n": 2}
        data = httpx.post(t.url + "/chat/completions", json=body, timeout=120).json()
    finally:
        t.stop()
        hf.batcher.stop()
    ids = chat_ids(server, "Greedy please")
    ref = server.generator.engine.generate([ids], max_new_tokens=8, temperature=0.0)
    assert [c["message"]["content"] for c in data["choices"]] == [ref.text[0]] * 2
    assert data["usage"]["completion_tokens"] == 2 * len(ref.tokens[0])


def test_a_request_joins_the_running_batch(http, server):
    """A request arriving while another decodes is admitted between steps (one batch for
    both), and still draws what its seed draws alone."""
    before = httpx.get(http.base + "/health").json()["batches"]
    result = {}

    def long_call():
        result["long"] = httpx.post(http.url + "/completions", timeout=120, json={
            "prompt": "long one", "max_tokens": 480, "seed": 1, "temperature": 1.0}).json()

    th = threading.Thread(target=long_call)
    th.start()
    time.sleep(0.5)
    short = httpx.post(http.url + "/completions", timeout=120, json={
        "prompt": "short", "max_tokens": 6, "seed": 9, "temperature": 1.0}).json()
    still_running = th.is_alive()
    th.join()
    after = httpx.get(http.base + "/health").json()["batches"]
    ref = engine_texts(server, server.generator.encode("short"), [9], 6)
    assert short["choices"][0]["text"] == ref.text[0]
    if still_running:  # the long request was decoding when the short one came and went
        assert after - before == 1
