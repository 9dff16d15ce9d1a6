"""units.py: the parsers behind -m, --cpus, --cpuset-cpus, --device-*-bps."""

from __future__ import annotations

import pytest

from minicontainer import units
from minicontainer.errors import UsageError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1024", 1024),
        ("0", 0),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("64m", 64 * 1024**2),
        ("64M", 64 * 1024**2),
        ("64mb", 64 * 1024**2),  # docker's RAMInBytes: optional b, binary units
        ("64MiB", 64 * 1024**2),
        ("64 m", 64 * 1024**2),
        ("1g", 1024**3),
        ("1.5g", 1536 * 1024**2),
        ("2t", 2 * 1024**4),
        ("100b", 100),
        (" 8m ", 8 * 1024**2),
    ],
)
def test_parse_size_accepts_docker_forms(text, expected):
    assert units.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "-64m", "64x", "1.2.3g", "m", "64 mb b", "%$š", "1e6", "10ib", "0x10"])
def test_parse_size_rejects_garbage_with_flag_and_hint(text):
    with pytest.raises(UsageError) as exc:
        units.parse_size(text, "--memory")
    assert exc.value.message == f"invalid --memory value {text!r}"
    assert "e.g. 64m" in exc.value.hint


def test_parse_size_rejects_more_than_int64():
    with pytest.raises(UsageError, match="64-bit"):
        units.parse_size("9000000p", "--memory")


def test_parse_size_rejects_non_strings():
    with pytest.raises(UsageError):
        units.parse_size(None, "--memory")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "n, text",
    [(0, "0 B"), (512, "512 B"), (1024, "1 KiB"), (83886080, "80 MiB"), (1610612736, "1.5 GiB"),
     (64 * 1024**2 + 1, "64 MiB"), (3 * 1024**4, "3 TiB")],
)
def test_format_size(n, text):
    assert units.format_size(n) == text


@pytest.mark.parametrize(
    "text, nanos",
    [("0.05", 50_000_000), ("1", 1_000_000_000), ("1.5", 1_500_000_000), (".5", 500_000_000),
     ("0.000000001", 1), ("0.1", 100_000_000)],
)
def test_parse_cpus(text, nanos):
    assert units.parse_cpus(text) == nanos


@pytest.mark.parametrize("text", ["", "abc", "-1", "0", "0.0", "1/2", "0.0000000001", "1e3"])
def test_parse_cpus_rejects(text):
    with pytest.raises(UsageError) as exc:
        units.parse_cpus(text)
    assert "--cpus" in exc.value.message and exc.value.hint


@pytest.mark.parametrize(
    "text, ids",
    [("0", (0,)), ("0-2,4", (0, 1, 2, 4)), ("4,0-2", (0, 1, 2, 4)), ("1,1,1", (1,)), (" 0 - 1 ".replace(" ", ""), (0, 1))],
)
def test_parse_cpuset(text, ids):
    assert units.parse_cpuset(text) == ids


@pytest.mark.parametrize("text", ["", ",", "a", "-1", "2-0", "0-", "0,,1", "0-1-2", "0-999999"])
def test_parse_cpuset_rejects(text):
    with pytest.raises(UsageError) as exc:
        units.parse_cpuset(text, "--cpuset-cpus")
    assert "--cpuset-cpus" in exc.value.message


@pytest.mark.parametrize("ids, text", [((0,), "0"), ((0, 1, 2, 4), "0-2,4"), ((3, 1, 2), "1-3"), ((0, 2, 4), "0,2,4"), ((), "")])
def test_format_cpuset(ids, text):
    assert units.format_cpuset(ids) == text


def test_cpuset_roundtrip():
    for text in ["0", "0-3", "0-2,4,6-7", "1,3,5"]:
        assert units.format_cpuset(units.parse_cpuset(text)) == text


@pytest.mark.parametrize(
    "text, expected",
    [("/dev/sda:1mb", ("/dev/sda", 1024**2)), ("/dev/loop0:512k", ("/dev/loop0", 512 * 1024)),
     ("/dev/disk/by-id/x:y:10", ("/dev/disk/by-id/x:y", 10))],
)
def test_split_device_rate(text, expected):
    assert units.split_device_rate(text) == expected


@pytest.mark.parametrize("text", ["", "/dev/sda", "/dev/sda:", ":1mb", "sda:1mb", "/dev/sda:abc", "/dev/sda:0", "/dev/sda:-1"])
def test_split_device_rate_rejects(text):
    with pytest.raises(UsageError) as exc:
        units.split_device_rate(text, "--device-write-bps")
    assert "--device-write-bps" in exc.value.message and exc.value.hint


@pytest.mark.parametrize(
    "text, kw, expected",
    [("20", {}, 20), (20, {}, 20), ("-1", {"minimum": -1}, -1), (" 7 ", {"maximum": 7}, 7)],
)
def test_parse_int(text, kw, expected):
    assert units.parse_int(text, "--pids-limit", **kw) == expected


@pytest.mark.parametrize("text, kw", [("x", {}), ("", {}), ("1.5", {}), ("0", {"minimum": 1}), ("9", {"maximum": 8}), (True, {})])
def test_parse_int_rejects(text, kw):
    with pytest.raises(UsageError, match="--pids-limit"):
        units.parse_int(text, "--pids-limit", **kw)
