"""names.py: the one rule behind container names, image names and ids, cgroup ids."""

from __future__ import annotations

import pytest

from minicontainer.cgroups.base import check_id
from minicontainer.errors import UsageError
from minicontainer.images.store import validate_image_name
from minicontainer.names import check_name, is_name
from minicontainer.container.spec import validate_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["a", "0", "a.b-c_d", "x" * 64])
def test_good_names(value):
    assert is_name(value)
    assert check_name(value, "thing", "a hint") == value


@pytest.mark.parametrize("value", ["", ".", "..", "-rf", "_x", ".hidden", "a/b", "a b", "é", "x" * 65, None, 7])
def test_bad_names(value):
    assert not is_name(value)
    with pytest.raises(UsageError) as exc:
        check_name(value, "thing", "a hint")
    assert exc.value.message == f"invalid thing {value!r}" and exc.value.hint == "a hint"


def test_a_final_newline_is_refused_by_all_three_callers():
    # a '$' anchor would let "web\n" through and make a file name with a newline
    for validate in (validate_name, validate_image_name, check_id):
        with pytest.raises(UsageError):
            validate("web\n")


def test_length_and_tag_are_per_kind():
    assert is_name("x" * 128, max_len=128) and not is_name("x" * 129, max_len=128)
    assert is_name("debian:bookworm", tag=True) and not is_name("debian:bookworm")
    assert not is_name("a:", tag=True) and not is_name("a:b:c", tag=True)


def test_each_caller_keeps_its_message():
    with pytest.raises(UsageError) as exc:
        check_id("../x")
    assert exc.value.message == "invalid container id '../x' for a cgroup name"
    with pytest.raises(UsageError) as exc:
        validate_image_name("../x")
    assert exc.value.message == "invalid image name '../x'" and "optionally :tag" in exc.value.hint
    with pytest.raises(UsageError) as exc:
        validate_name("../x")
    assert exc.value.message == "invalid container name '../x'" and "1-64" in exc.value.hint
