"""RowStore: resume after a cut write, sharding, key dedup, corrupt lines named."""

import json

import pytest

from evals.store import RowStore


def key(row):
    return (row["p"], row["j"])


def test_sharded_append_resume_and_dedup(tmp_path):
    store = RowStore(tmp_path / "rows", key=key, shard_rows=2)
    assert store.append([{"p": i, "j": 0} for i in range(5)]) == 5
    assert store.append([{"p": 0, "j": 0}, {"p": 9, "j": 1}]) == 1  # (0, 0) is already there
    names = sorted(p.name for p in (tmp_path / "rows").iterdir())
    assert names == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    lines = [json.loads(l) for n in names for l in (tmp_path / "rows" / n).read_text().splitlines()]
    assert [(r["p"], r["j"]) for r in lines] == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (9, 1)]
    again = RowStore(tmp_path / "rows", key=key, shard_rows=2)
    assert len(again) == 6 and (9, 1) in again and (5, 0) not in again
    again.append([{"p": 5, "j": 0}])  # the last shard is full: a fourth one starts
    assert (tmp_path / "rows" / "part-00003.jsonl").exists()


def test_cut_last_line_is_dropped_and_file_repaired(tmp_path):
    path = tmp_path / "s.jsonl"
    RowStore(path, key=key).append([{"p": 1, "j": 0}, {"p": 2, "j": 0}])
    with open(path, "a") as f:
        f.write('{"p": 3, "j"')  # a writer killed mid-row
    with pytest.warns(UserWarning, match="incomplete last row"):
        store = RowStore(path, key=key)
    assert sorted(store.rows) == [(1, 0), (2, 0)]
    store.append([{"p": 3, "j": 0}])
    assert [json.loads(l)["p"] for l in path.read_text().splitlines()] == [1, 2, 3]


def test_corrupt_middle_line_is_an_error_naming_it(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"p": 1, "j": 0}\nnot json\n{"p": 2, "j": 0}\n')
    with pytest.raises(ValueError, match=r"s.jsonl:2: not a JSON row"):
        RowStore(path, key=key)
    path.write_text('{"p": 1}\n')
    with pytest.raises(ValueError, match="lacks its key field"):
        RowStore(path, key=key)
