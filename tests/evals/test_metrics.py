"""Eval metrics against independent references: exhaustive enumeration for pass@k, hand-computed
means and standard errors, and verifier-equivalent spellings for maj@k."""

import itertools
import math
from fractions import Fraction

import pytest

from evals.metrics import (format_ok, is_truncated, ks_up_to, length_stats, maj_at_k,
                           majority_vote, mean_pass_at_k, pass_at_1, pass_at_k, response_stats,
                           split_response)


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The fraction of all k-subsets of n samples (c of them correct) holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(samples[i] for i in subset) for subset in subsets)
    return float(Fraction(hits, len(subsets)))


def test_pass_at_k_matches_enumeration_over_all_subsets():
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k),
                                                           abs=1e-12), (n, c, k)


def test_pass_at_1_is_the_fraction_correct():
    assert pass_at_k(64, 17, 1) == pytest.approx(17 / 64, abs=1e-15)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows float64; the product form does not need it.
    exact = 1 - Fraction(math.comb(990, 500), math.comb(1000, 500))
    assert pass_at_k(1000, 10, 500) == pytest.approx(float(exact), rel=1e-12)


def test_k_above_n_is_an_error():
    with pytest.raises(ValueError, match="fewer samples than k"):
        pass_at_k(4, 2, 8)
    with pytest.raises(ValueError, match="fewer samples than k"):
        mean_pass_at_k([(8, 3), (4, 1)], 8)  # one problem with too few samples is enough
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_pass_at_1_mean_and_standard_error_by_hand():
    correct = [[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]
    # per-problem means 3/4, 0, 1 -> mean 7/12; sample variance with ddof=1:
    # ((3/4-7/12)^2 + (7/12)^2 + (5/12)^2) / 2 = (1/36 + 49/144 + 25/144) / 2 = 13/48
    mean, se = pass_at_1(correct)
    assert mean == pytest.approx(7 / 12)
    assert se == pytest.approx(math.sqrt(13 / 48) / math.sqrt(3))
    assert pass_at_1([[1, 0]]) == (0.5, None)  # one problem: no standard error


def test_majority_vote_clusters_equivalent_spellings():
    answers = ["7", "1/2", "\\frac{1}{2}", "7", "0.5"]
    vote = majority_vote(answers)  # the math verifier decides equivalence
    assert sorted(map(sorted, vote.clusters)) == [[0, 3], [1, 2, 4]]
    assert vote.winner == 1 and vote.count == 3
    # A raw-string vote would pick "7" (two identical strings) and get it wrong.
    correct = [a != "7" for a in answers]
    assert maj_at_k(answers, correct, 5)
    assert not maj_at_k(answers, correct, 1)


def test_majority_vote_ties_go_to_the_first_seen_cluster():
    vote = majority_vote(["3", "2", "2", "3"], equivalent=lambda a, b: a == b)
    assert vote.winner == 0 and vote.count == 2
    vote = majority_vote(["2", "3", "3", "2"], equivalent=lambda a, b: a == b)
    assert vote.winner == 0


def test_majority_vote_with_a_supplied_equivalence_and_missing_answers():
    same_letter = lambda a, b: a.strip().upper() == b.strip().upper()  # noqa: E731
    vote = majority_vote([None, "b", "A", "B", None], equivalent=same_letter)
    assert vote.winner == 1 and vote.count == 2
    assert majority_vote([None, None]).winner is None
    assert not maj_at_k([None, None], [False, False], 2)
    with pytest.raises(ValueError):
        maj_at_k(["1"], [True], 2)


def test_length_stats():
    stats = length_stats(list(range(1, 11)) + [None])
    assert stats == {"mean": 5.5, "median": 5.5, "p90": pytest.approx(9.1)}
    assert length_stats([None]) is None


def test_response_split_format_and_truncation():
    assert split_response("r</think>a", think_opened=True) == ("r", "a", True)
    assert split_response("<think>r</think> a") == ("r", "a", True)
    assert split_response("still thinking", think_opened=True) == ("still thinking", "", False)
    assert split_response("just an answer") == ("", "just an answer", True)
    assert format_ok("r</think>\\boxed{1}", think_opened=True)
    assert format_ok("<think>r</think>\\boxed{1}")
    assert not format_ok("<think>r</think>")  # no answer
    assert not format_ok("<think>a</think><think>b</think>x")  # two blocks
    assert not format_ok("\\boxed{1}")  # no think block
    assert is_truncated("r</think>x", "length", True)
    assert is_truncated("unclosed", "stop", True)
    assert not is_truncated("r</think>x", "stop", True)
    rows = [{"completion": "r</think>x", "finish_reason": "stop", "think_opened": True},
            {"completion": "r", "finish_reason": "length", "think_opened": True},
            {"completion": "r</think>", "finish_reason": "stop", "think_opened": True},
            {"completion": "x", "finish_reason": "stop", "think_opened": False}]
    assert response_stats(rows) == {"truncation_rate": 0.25, "format_adherence": 0.25,
                                    "eos_rate": 0.75}


def test_ks_up_to():
    assert ks_up_to(1) == [1]
    assert ks_up_to(6) == [1, 2, 4, 6]
    assert ks_up_to(64) == [1, 2, 4, 8, 16, 32, 64]
