"""``dataclass`` for the start path's plain value classes, built without exec.

``dataclasses.dataclass`` writes the source of ``__init__``, ``__repr__``,
``__eq__``, ``__hash__`` and (frozen) ``__setattr__``/``__delattr__`` for
every class and compiles each with ``exec``: about 0.6 ms a class here. The
plan's vocabulary alone is ~50 classes (container/steps.py), so defining the
classes cost ~30 ms of every ``run`` before anything ran (issue 15).

This decorator keeps them real dataclasses: ``dataclasses.dataclass`` still
collects the fields (with ``init=False, repr=False, eq=False``: no code is
generated), so ``dataclasses.fields``/``replace``/``asdict``/``is_dataclass``
and ``__match_args__`` work as before. The methods are shared functions that
read the class's field list instead of code written for each class. They
behave as the generated ones do (tests/unit/test_records.py compares them
with the real thing); an instance is built a few microseconds slower, which a
plan of ~120 steps does not notice.

Measured (python -X importtime, this machine): container.steps 37 ms -> 4 ms.

Only ``frozen=`` is understood; any other option (order, slots, kw_only, ...)
goes to ``dataclasses.dataclass`` itself, so nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, FrozenInstanceError, field  # noqa: F401 - field is re-exported

__all__ = ["dataclass", "field"]


def dataclass(cls=None, /, *, frozen: bool = False, **options):
    """``@dataclass`` or ``@dataclass(frozen=True)``, as ``dataclasses`` has it."""
    if options:
        return dataclasses.dataclass(cls, frozen=frozen, **options) if cls else \
            dataclasses.dataclass(frozen=frozen, **options)

    def wrap(cls):
        return _process(cls, frozen)

    return wrap if cls is None else wrap(cls)


def _process(cls, frozen: bool):
    # Fields, defaults and __match_args__ by dataclasses itself; it generates no
    # method with these flags. Every class made here is recorded as non-frozen
    # for dataclasses' own inheritance check, so a base and its subclasses agree.
    # A class without a docstring gets one made from inspect.signature() by
    # dataclasses (0.4 ms a class); ours names the fields instead.
    undocumented = not cls.__doc__
    if undocumented:
        cls.__doc__ = "-"
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cls)
    if undocumented:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields)})"
    init = []
    seen_default = False
    for f in fields:
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if f.init:
            if seen_default and not has_default:
                # the same error dataclasses raises for this class
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            seen_default = seen_default or has_default
        init.append((f.name, f.init, f.default, f.default_factory))
    cls.__record_init__ = tuple(init)
    cls.__record_n_init__ = sum(1 for f in fields if f.init)
    cls.__record_repr__ = tuple(f.name for f in fields if f.repr)
    cls.__record_compare__ = tuple(f.name for f in fields if f.compare)
    cls.__record_hash__ = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    cls.__record_post_init__ = hasattr(cls, "__post_init__")

    own = cls.__dict__
    if "__init__" not in own:
        cls.__init__ = _init
    if "__repr__" not in own:
        cls.__repr__ = _repr
    if "__eq__" not in own:
        cls.__eq__ = _eq
    explicit_hash = own.get("__hash__", MISSING) not in (MISSING, None)
    if not explicit_hash:
        cls.__hash__ = _hash if frozen else None
    if frozen:
        if "__setattr__" in own or "__delattr__" in own:
            raise TypeError(f"Cannot overwrite attribute __setattr__ in class {cls.__name__}")
        cls.__setattr__ = _frozen_setattr
        cls.__delattr__ = _frozen_delattr
    return cls


def _init(self, *args, **kwargs):
    cls = type(self)
    spec = cls.__record_init__
    n_init = cls.__record_n_init__
    if len(args) > n_init:
        raise TypeError(f"{cls.__qualname__}.__init__() takes {n_init + 1} positional arguments "
                        f"but {len(args) + 1} were given")
    setattr_ = object.__setattr__
    i = 0
    for name, in_init, default, factory in spec:
        if in_init and i < len(args):
            if name in kwargs:
                raise TypeError(f"{cls.__qualname__}.__init__() got multiple values for argument {name!r}")
            value = args[i]
            i += 1
        elif in_init and name in kwargs:
            value = kwargs.pop(name)
        elif default is not MISSING:
            value = default
        elif factory is not MISSING:
            value = factory()
        elif in_init:
            raise TypeError(f"{cls.__qualname__}.__init__() missing 1 required positional argument: {name!r}")
        else:
            continue  # init=False without a default: left unset, as dataclasses does
        setattr_(self, name, value)
    if kwargs:
        raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument {next(iter(kwargs))!r}")
    if cls.__record_post_init__:
        self.__post_init__()


def _repr(self):
    cls = type(self)
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in cls.__record_repr__)
    return f"{cls.__qualname__}({inner})"


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = self.__class__.__record_compare__
    return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)


def _hash(self):
    return hash(tuple(getattr(self, n) for n in type(self).__record_hash__))


def _frozen_setattr(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r}")
