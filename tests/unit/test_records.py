"""records.dataclass behaves as dataclasses.dataclass for the classes it makes."""

from __future__ import annotations

import dataclasses

import pytest

from minicontainer import records

pytestmark = pytest.mark.unit


def _pair(frozen: bool):
    """The same class body, once through each decorator."""
    made = []
    for deco in (dataclasses.dataclass, records.dataclass):
        @deco(frozen=frozen)
        class Base:
            a: int
            b: str = "x"
            c: tuple = dataclasses.field(default_factory=tuple)
            hidden: object = dataclasses.field(default=None, compare=False, repr=False)

        @deco(frozen=frozen)
        class Child(Base):
            d: int = 4

        made.append((Base, Child))
    return made


@pytest.mark.parametrize("frozen", [True, False])
def test_same_behaviour_as_dataclasses(frozen):
    (RB, RC), (MB, MC) = _pair(frozen)
    for real, mine in ((RB, MB), (RC, MC)):
        r, m = real(1, "y", (2,), hidden=object()), mine(1, "y", (2,), hidden=object())
        assert repr(m).replace(mine.__qualname__, "X") == repr(r).replace(real.__qualname__, "X")
        assert [f.name for f in dataclasses.fields(m)] == [f.name for f in dataclasses.fields(r)]
        assert dataclasses.asdict(m) | {"hidden": None} == dataclasses.asdict(r) | {"hidden": None}
        assert mine.__match_args__ == real.__match_args__
        # class attributes as dataclasses leaves them: a default stays, a field(default_factory=...) goes
        for attr in ("a", "b", "c", "hidden", "d"):
            assert hasattr(mine, attr) == hasattr(real, attr), attr
            assert getattr(mine, attr, None) == getattr(real, attr, None), attr
        assert dataclasses.is_dataclass(m)
        # eq ignores compare=False fields; other classes are not equal
        assert m == mine(1, "y", (2,)) and m != mine(2) and m != r
        assert mine(1).c == ()  # from default_factory
        assert dataclasses.replace(m, a=9).a == 9 and dataclasses.replace(m, a=9).b == "y"
        if frozen:
            assert hash(mine(1, "y")) == hash(mine(1, "y", hidden=5))
            assert hash(mine(1, "y")) == hash(real(1, "y"))
            with pytest.raises(dataclasses.FrozenInstanceError):
                m.a = 2
            with pytest.raises(dataclasses.FrozenInstanceError):
                del m.a
        else:
            assert mine.__hash__ is None and real.__hash__ is None
            m.a = 2
            assert m.a == 2


def test_wrong_arguments_are_type_errors():
    (_, _), (MB, MC) = _pair(True)
    for bad in (lambda: MB(), lambda: MB(1, a=1), lambda: MB(1, nope=2), lambda: MB(1, "b", (), None, 5)):
        with pytest.raises(TypeError):
            bad()
    assert MC(1, d=7).d == 7


def test_non_default_after_default_is_refused_like_dataclasses():
    with pytest.raises(TypeError, match="non-default argument"):
        @records.dataclass(frozen=True)
        class Bad:
            a: int = 1
            b: int


def test_own_methods_are_kept_and_post_init_runs():
    @records.dataclass(frozen=True)
    class P:
        a: int

        def __repr__(self):
            return "mine"

        def __post_init__(self):
            object.__setattr__(self, "seen", True)

    assert repr(P(1)) == "mine" and P(1).seen


def test_other_options_go_to_dataclasses():
    @records.dataclass(frozen=True, order=True)
    class O:
        a: int

    assert O(1) < O(2)
    assert "__lt__" in O.__dict__


def test_the_steps_are_made_with_it():
    from minicontainer.container import steps

    fork = steps.Fork(keep_fds=2)
    assert fork == steps.Fork(2) and hash(fork) == hash(steps.Fork(2))
    assert repr(fork) == "Fork(keep_fds=2)"
    assert steps.Fork.__init__ is records._init


def test_own_field_and_fields_asdict_match_dataclasses():
    @records.dataclass(frozen=True)
    class Mine:
        a: int
        tags: tuple = records.field(default_factory=tuple)
        nested: list = records.field(default_factory=list)

    m = Mine(1, ("x",), [Mine(2)])
    assert [f.name for f in records.fields(Mine)] == ["a", "tags", "nested"]
    assert [f.name for f in dataclasses.fields(m)] == ["a", "tags", "nested"]
    assert records.asdict(m) == dataclasses.asdict(m) == {
        "a": 1, "tags": ("x",), "nested": [{"a": 2, "tags": (), "nested": []}]}
    assert Mine(1).nested is not Mine(1).nested  # a fresh list each time
    with pytest.raises(ValueError, match="mutable default"):
        @records.dataclass
        class Shared:
            items: list = []


def test_a_dataclasses_subclass_of_ours_works():
    @records.dataclass(frozen=True)
    class Base:
        a: int = 0

    @dataclasses.dataclass(frozen=True)
    class Sub(Base):
        b: int = 1

    assert Sub(2, 3) == Sub(a=2, b=3) and Sub(2, 3).a == 2
    assert dataclasses.is_dataclass(Base) and Base.__dataclass_params__.frozen
    with pytest.raises(TypeError, match="non-frozen"):
        @dataclasses.dataclass
        class Thawed(Base):
            c: int = 0


@pytest.mark.parametrize("frozen", [True, False])
def test_replace_matches_dataclasses_replace(frozen):
    (RB, RC), (MB, MC) = _pair(frozen)
    for real, mine in ((RB, MB), (RC, MC)):
        r, m = real(1, "y", (2,), hidden=7), mine(1, "y", (2,), hidden=7)
        ours, theirs = records.replace(m, a=9, c=(3,)), dataclasses.replace(r, a=9, c=(3,))
        assert records.asdict(ours) == dataclasses.asdict(theirs) and type(ours) is mine
        assert ours.hidden == theirs.hidden == 7
        with pytest.raises(TypeError):
            records.replace(m, nosuch=1)
    assert records.replace(RB(1), a=2) == RB(2)  # a class dataclasses made: its own replace

    @records.dataclass
    class NoInit:
        a: int = 0
        later: int = records.field(default=5, init=False)

    with pytest.raises(ValueError, match="init=False"):
        records.replace(NoInit(), later=1)
    assert records.replace(NoInit(1), a=2).a == 2


def test_making_classes_does_not_import_dataclasses():
    import subprocess
    import sys

    code = ("import sys; from minicontainer.container import steps, state; from minicontainer.security import users; "
            "print('dataclasses' in sys.modules, 'inspect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
