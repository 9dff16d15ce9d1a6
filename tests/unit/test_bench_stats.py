"""scripts/bench's maths: medians, per-round ratios, the rotating order (no timing here)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench"


@pytest.fixture(scope="module")
def bench():
    loader = importlib.machinery.SourceFileLoader("bench_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader("bench_script", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_median(bench):
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        bench.median([])


def test_the_ratio_is_the_median_of_per_round_ratios_not_of_medians(bench):
    # Round 2 ran on a loaded machine: both got slower. Per-round ratios see 2x
    # every time; the ratio of the medians would not (it mixes rounds).
    a = [20.0, 200.0, 22.0]
    b = [10.0, 100.0, 11.0]
    assert bench.pair_ratios(a, b) == [2.0, 2.0, 2.0]
    assert bench.median_ratio(a, b) == 2.0
    a2, b2 = [10.0, 30.0, 50.0], [50.0, 10.0, 25.0]
    assert bench.median_ratio(a2, b2) == 2.0  # ratios 0.2, 3.0, 2.0
    assert bench.median(a2) / bench.median(b2) == 1.2
    with pytest.raises(ValueError):
        bench.pair_ratios([1.0], [1.0, 2.0])


def test_rotations_put_every_candidate_in_every_place(bench):
    assert bench.rotations(["a", "b"], 4) == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    rounds = bench.rotations(["a", "b", "c"], 6)
    for place in range(3):
        assert sorted(r[place] for r in rounds) == ["a", "a", "b", "b", "c", "c"]
    assert bench.rotations([], 3) == []


def test_run_rounds_keeps_one_time_per_round_and_drops_the_warmup(bench):
    calls = []

    def cand(name):
        def run():
            calls.append(name)
            return float(len(calls))
        return run

    times = bench.run_rounds({"a": cand("a"), "b": cand("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert times == {"a": [3.0, 6.0, 7.0], "b": [4.0, 5.0, 8.0]}


def test_verdict_and_rows(bench):
    assert bench.verdict(0.9, 1.0) == "met"
    assert bench.verdict(1.3, 1.0).startswith("MISSED (1.30x")
    assert bench.verdict(None, 1.0) == "not measured"
    assert bench.verdict(19.6, 15.0, "MB") == "MISSED (19.60 MB > 15.0 MB)"
    rows = bench.rows_against({"x": [2.0, 4.0], "ref": [1.0, 2.0]}, "ref")
    assert rows == [("x", 3.0, 2.0, 2.0), ("ref", 1.5, 1.0, 1.0)]


def test_quick_is_a_short_run(bench):
    args = bench.parse_args(["--quick"])
    assert (args.pairs, args.seq, args.conc) == (5, 20, 5)
    assert bench.parse_args([]).pairs == 21 and bench.parse_args([]).seq == 100


def test_the_launchers_run_the_entry_points_pyproject_names(bench, tmp_path):
    """The bench times what an install runs: `minicontainer` is main.py's entry
    (not cli.py's main, which imports click), for this checkout and a baseline's."""
    from types import SimpleNamespace

    base = tmp_path / "old"
    (base / "src").mkdir(parents=True)
    (base / "pyproject.toml").write_text('[project.scripts]\nminicontainer = "minicontainer.cli:main"\n')
    (tmp_path / "work").mkdir()
    s = SimpleNamespace(work=tmp_path / "work", python="/usr/bin/python3")
    ours = bench.Setup._script(s, "minicontainer").read_text()
    theirs = bench.Setup._script(s, "minicontainer", base / "src", prefix="baseline-").read_text()
    assert "from minicontainer.main import entry\n" in ours
    assert "from minicontainer.cli import main\n" in theirs and str(base / "src") in theirs
    assert (tmp_path / "work" / "bin" / "baseline-minicontainer").exists()
