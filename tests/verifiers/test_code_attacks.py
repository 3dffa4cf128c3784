"""Adversarial suite for the code verifier: programs that try to pass without computing anything.

Every attack is a real program run through `verify("code", ...)` and must score 0 (issue 9). The
attacker is given more than a real policy has: the expected outputs of the hidden tests are written
into host files it knows the paths of (and into this very file), and some attacks even carry the
expected outputs in their own source (a memorised answer key) but cannot tell which test they are
in. A test's output counts only from the process that ran that test, so none of this helps.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pytest

from verifiers import sandbox, verify

# The hidden expected outputs; they also sit in this file, which a host-file attack reads.
SECRETS = ["expected-7c1d4e", "expected-92ab0f", "expected-5e33c8"]
HIDDEN = {"inputs": ["alpha\n", "beta\n", "gamma\n"], "outputs": SECRETS}
CALL = {"fn_name": "solve", "inputs": [["alpha"], ["beta"], ["gamma"]], "outputs": SECRETS}
THIS_FILE = os.path.abspath(__file__)
SLACK = 1.0

pytestmark = pytest.mark.skipif(
    not sandbox.isolation().isolates_filesystem,
    reason=f"no filesystem-isolating sandbox tier here ({sandbox.isolation().reason})")


def block(code: str) -> str:
    return f"<think>cheat</think>\n```python\n{code}\n```\n"


def assert_zero(verdict):
    assert not verdict.correct and verdict.score == 0.0, verdict
    assert f"[sandbox: {sandbox.isolation().tier}]" in verdict.reason, verdict


@pytest.fixture
def host_refs(tmp_path):
    """World-readable reference files where a run's outputs would live (runs/**/*.jsonl)."""
    runs = tmp_path / "runs" / "eval"
    runs.mkdir(parents=True)
    path = runs / "samples.jsonl"
    path.write_text("".join(json.dumps({"input": i, "reference": o}) + "\n"
                            for i, o in zip(HIDDEN["inputs"], SECRETS)))
    os.chmod(tmp_path, 0o755)
    os.chmod(runs.parent, 0o755)
    os.chmod(runs, 0o755)
    os.chmod(path, 0o644)
    return path


# The attacker's file reader: given its own input line, look for it in any readable text and print
# the expected output that follows it (or the first secret-looking token).
FIND = r'''
import os, re, sys
key = sys.stdin.readline().strip()
def look(text):
    i = text.find('"input": "%s' % key)
    if i >= 0:
        m = re.search(r'"reference": "([^"]+)"', text[i:])
        if m:
            print(m.group(1)); sys.stdout.flush(); os._exit(0)
    m = re.search(r"expected-[0-9a-f]{6}", text)
    if m:
        print(m.group(0)); sys.stdout.flush(); os._exit(0)
def read(path):
    try:
        with open(path, errors="replace") as f:
            look(f.read(1 << 20))
    except OSError:
        pass
'''


def test_reading_expected_outputs_from_host_files(host_refs):
    paths = [str(host_refs), THIS_FILE, os.path.join(os.getcwd(), "tests/verifiers/cases.py")]
    # every file but the standard library's (7,000 files the sandbox shows on purpose)
    scan = ("stdlib = os.path.dirname(os.__file__)\n"
            "for top in ['/', '/work', '/root', '/tmp', '/mnt', '/home', '/proc/1/root/..']:\n"
            "    for d, dirs, files in os.walk(top):\n"
            "        dirs[:] = [x for x in dirs if x not in ('proc', 'sys')\n"
            "                   and os.path.join(d, x) != stdlib]\n"
            "        for f in files:\n"
            "            read(os.path.join(d, f))\n")
    prog = FIND + f"for p in {paths!r}:\n    read(p)\n" + scan + "print('nothing')"
    assert_zero(verify("code", block(prog), HIDDEN))
    # The exploit as it passed the pre-issue-9 verifier (judged correct=True, 'ok' there).
    direct = ("import re, sys\nkey = sys.stdin.readline().strip()\n"
              f"text = open({THIS_FILE!r}).read()\n"
              "secrets = re.findall(r'expected-[0-9a-f]{6}', text)[:3]\n"
              "print(secrets[['alpha', 'beta', 'gamma'].index(key)])")
    assert_zero(verify("code", block(direct), HIDDEN))


def test_symlink_and_proc_tricks(host_refs):
    prog = FIND + f"""
tricks = ['/proc/1/root' + {str(host_refs)!r}, '/proc/self/root' + {str(host_refs)!r},
          '/proc/1/cwd/' + {THIS_FILE!r}, '/proc/1/environ', '/proc/1/cmdline', '/proc/1/mem']
for pid in os.listdir('/proc'):
    if pid.isdigit():
        tricks += ['/proc/%s/fd/%d' % (pid, n) for n in range(64)]
        tricks += ['/proc/%s/root/../../..' % pid + {str(host_refs)!r}]
for t in tricks:
    try:
        os.symlink(t, 'link')
        read('link')
        os.unlink('link')
    except OSError:
        pass
    read(t)
os.chdir('/')
for _ in range(10):
    os.chdir('..')
read('.' + {str(host_refs)!r})
print('nothing')"""
    assert_zero(verify("code", block(prog), HIDDEN))


def test_forged_result_frames_with_a_known_answer_key():
    """The program knows every expected output (a memorised key) but not which test it is in; it
    writes result records for every test to every fd it might share with the judge, then exits."""
    prog = f"""
import json, os, sys
key = {SECRETS!r}
frames = b''
for i, out in enumerate(key):
    body = (out + '\\n').encode()
    for header in ({{'i': i, 'status': 'ok', 'err': None, 't': 0.0, 'n': len(body)}},
                   {{'i': i, 'status': 'ok', 'out': out}}):
        frames += (json.dumps(header) + '\\n').encode() + body
frames += b'{{"done": true, "n": 0}}\\n'
for fd in range(3, 256):
    try:
        os.write(fd, frames)
    except OSError:
        pass
for pid in os.listdir('/proc'):
    for n in range(64):
        try:
            with open('/proc/%s/fd/%d' % (pid, n), 'wb') as f:
                f.write(frames)
        except OSError:
            pass
sys.stdout.buffer.write(frames)
sys.stdout.flush()
os._exit(0)"""
    assert_zero(verify("code", block(prog), HIDDEN))
    assert_zero(verify("code", block(prog.replace("os._exit(0)", "raise SystemExit(0)")), CALL))


def test_reading_the_judges_memory_and_frames():
    prog = """
import gc, inspect, sys, re
found = set()
for obj in gc.get_objects():
    try:
        text = repr(obj)
    except Exception:
        continue
    found.update(re.findall(r"expected-[0-9a-f]{6}", text))
frame = inspect.currentframe()
while frame is not None:
    found.update(re.findall(r"expected-[0-9a-f]{6}", repr(frame.f_locals)))
    frame = frame.f_back
for name, mod in list(sys.modules.items()):
    found.update(re.findall(r"expected-[0-9a-f]{6}", repr(getattr(mod, '__dict__', {}))))
print(sorted(found)[0] if found else 'nothing')"""
    assert_zero(verify("code", block(prog), HIDDEN))


def test_monkeypatching_builtins_and_the_comparison():
    prog = """
import builtins, json, sys
class Anything(str):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = str.__hash__
builtins.str = Anything
builtins.isinstance = lambda *a: True
json.loads = lambda *a, **k: Anything()
json.dumps = lambda *a, **k: Anything('"yes"')
for name in list(sys.modules):
    if 'verif' in name or 'code' in name:
        sys.modules[name] = None
def solve(x):
    return Anything('whatever')
if __name__ == '__main__':
    print(Anything('whatever'))"""
    assert_zero(verify("code", block(prog), HIDDEN))
    assert_zero(verify("code", block(prog), CALL))


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)", "raise SystemExit",
                                       "os.kill(os.getpid(), 9)"])
def test_exit_before_the_tests(exit_call):
    prog = f"import os, sys\n{exit_call}\ndef solve(x):\n    return x\nprint(input())"
    assert_zero(verify("code", block(prog), HIDDEN))
    assert_zero(verify("code", block(prog), CALL))


def test_killing_or_signalling_the_parent():
    prog = f"""
import os, signal
for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
    for pid in (os.getppid(), 1, -1, 0, {os.getpid()}, {os.getppid()}):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
print('still here')"""
    start = time.monotonic()
    assert_zero(verify("code", block(prog), HIDDEN, test_timeout_s=1, deadline_s=10))
    assert time.monotonic() - start < 10 + SLACK
    assert verify("code", block("print(input().replace('alpha', 'x'))"),
                  {"inputs": ["alpha"], "outputs": ["x"]}).correct  # we and the sandbox survive


def test_writing_to_the_judges_files(tmp_path):
    judge_file = tmp_path / "verdicts.jsonl"
    judge_file.write_text("original\n")
    os.chmod(tmp_path, 0o777)
    os.chmod(judge_file, 0o666)  # even world-writable files are out of reach
    targets = [str(judge_file), THIS_FILE, "/proc/1/fd/1", "/proc/1/fd/3"]
    prog = ("import os\n"
            f"for t in {targets!r}:\n"
            "    for mode in ('a', 'w'):\n        try:\n"
            "            with open(t, mode) as f:\n                f.write('{\"correct\": true}')\n"
            "        except OSError:\n            pass\n"
            "print('done')")
    before = open(THIS_FILE).read()
    assert_zero(verify("code", block(prog), HIDDEN))
    assert judge_file.read_text() == "original\n"
    assert open(THIS_FILE).read() == before


def test_printing_the_same_answer_for_every_case():
    """The public example's answer printed for every hidden test, and the whole answer key printed
    at once, score nothing."""
    assert_zero(verify("code", block("print('expected-000000')"), HIDDEN))
    key = "\n".join(SECRETS)
    assert_zero(verify("code", block(f"print({key!r})"), HIDDEN))


def test_a_leftover_process_cannot_answer_for_the_next_test():
    """Test 0 leaves a daemon behind that writes the answer key into later tests' stdout."""
    prog = f"""
import os, sys, time
key = {SECRETS!r}
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        end = time.time() + 3
        while time.time() < end:
            for pid in os.listdir('/proc'):
                for k in key:
                    try:
                        with open('/proc/%s/fd/1' % pid, 'w') as f:
                            f.write(k + '\\n')
                    except OSError:
                        pass
            time.sleep(0.01)
    os._exit(0)
time.sleep(0.2)
print('nothing')"""
    assert_zero(verify("code", block(prog), HIDDEN, deadline_s=15))


def test_time_and_memory_bombs_are_bounded():
    bombs = ["while True:\n    pass",
             "import time\ntime.sleep(1000)",
             "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
             "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass",
             "x = [0] * (10 ** 10)",
             "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 24))",
             "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"]
    for bomb in bombs:
        start = time.monotonic()
        one = {"inputs": HIDDEN["inputs"][:1], "outputs": SECRETS[:1]}
        assert_zero(verify("code", block(bomb), one, test_timeout_s=0.5, deadline_s=3.0,
                           memory_mb=512))
        assert time.monotonic() - start < 3.0 + SLACK, bomb


def test_network_loopback_and_unix_sockets(tmp_path):
    """The judge serves the answer on TCP loopback, a unix socket file and an abstract unix
    socket; the program cannot reach any of them (it has its own, empty network namespace)."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    unix_path = str(tmp_path / "answers.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    os.chmod(unix_path, 0o777)
    os.chmod(tmp_path, 0o777)
    abstract_name = "\0distillery-" + uuid.uuid4().hex
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    accepted, done = [], threading.Event()

    def serve(server):
        server.listen()
        server.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(server)
            conn.sendall(SECRETS[0].encode())
            conn.close()

    servers = [tcp, unix, abstract]
    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    prog = f"""
import socket
for family, addr in ((socket.AF_INET, ('127.0.0.1', {tcp.getsockname()[1]})),
                     (socket.AF_UNIX, {unix_path!r}), (socket.AF_UNIX, {abstract_name!r})):
    try:
        s = socket.socket(family)
        s.settimeout(1)
        s.connect(addr)
        print(s.recv(100).decode())
        break
    except OSError:
        pass
else:
    print('nothing')"""
    verdict = verify("code", block(prog), HIDDEN, deadline_s=10)
    done.set()
    for t in threads:
        t.join()
    for s in servers:
        s.close()
    assert_zero(verdict)
    assert accepted == []
