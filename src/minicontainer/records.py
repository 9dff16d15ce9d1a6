"""``dataclass`` for the start path's plain value classes, built without exec.

``dataclasses.dataclass`` writes the source of ``__init__``, ``__repr__``,
``__eq__``, ``__hash__`` and (frozen) ``__setattr__``/``__delattr__`` for
every class and compiles each with ``exec``: about 0.6 ms a class here. The
plan's vocabulary alone is ~50 classes (container/steps.py), and the start
path defines ~90, so defining classes cost ~50 ms of every ``run`` before
anything ran (issue 15). Importing ``dataclasses`` also imports ``inspect``
(and with it ast, dis, tokenize): ~10 ms of every OCI verb (``state``...).

Here the methods are shared functions that read the class's field list
instead of code written for each class, and the field list is read from the
annotations by this module. The classes stay dataclasses for the rest of the
code: ``__dataclass_fields__`` (what ``dataclasses.fields``/``replace``/
``asdict``/``is_dataclass`` read) is made by ``dataclasses`` itself, the first
time someone asks for it, from a copy of the class (so only code that uses
those functions imports dataclasses). They behave as the generated ones do:
tests/unit/test_records.py compares them with the real thing. An instance is
built a few microseconds slower, which a plan of ~120 steps does not notice.

Measured (python -X importtime, this machine): container.steps 50 -> 4 ms;
`run`'s imports 171 -> 80 ms with every start-path class made here.

Understood: ``frozen=``; fields with a default, ``field(default=...,
default_factory=..., init=, repr=, compare=, hash=, metadata=)`` (ours or
dataclasses'); ``__post_init__``. Anything else (order, slots, kw_only,
ClassVar, InitVar, a base made by dataclasses) goes to
``dataclasses.dataclass`` itself, so nothing is silently ignored.
"""

from __future__ import annotations

import sys

__all__ = ["dataclass", "field", "fields", "asdict", "replace", "MISSING"]


class _Missing:
    def __repr__(self):
        return "MISSING"


MISSING = _Missing()


def _is_missing(value) -> bool:
    # dataclasses.MISSING too: a class here may use dataclasses.field()
    return value is MISSING or type(value).__name__ == "_MISSING_TYPE"


class Field:
    """What ``field()`` returns and ``fields()`` lists (the attributes dataclasses' Field has)."""

    __slots__ = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare", "metadata")

    def __init__(self, default=MISSING, default_factory=MISSING, init=True, repr=True, hash=None, compare=True,
                 metadata=None):
        if not _is_missing(default) and not _is_missing(default_factory):
            raise ValueError("cannot specify both default and default_factory")
        self.name, self.type = None, None
        self.default = MISSING if _is_missing(default) else default
        self.default_factory = MISSING if _is_missing(default_factory) else default_factory
        self.init, self.repr, self.hash, self.compare = init, repr, hash, compare
        self.metadata = metadata or {}

    def __repr__(self):
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default=MISSING, default_factory=MISSING, init=True, repr=True, hash=None, compare=True,
          metadata=None, **unknown):
    if unknown:  # kw_only=... and the like: the real thing
        import dataclasses

        return dataclasses.field(default=default, default_factory=default_factory, init=init, repr=repr,
                                 hash=hash, compare=compare, metadata=metadata, **unknown)
    return Field(default, default_factory, init, repr, hash, compare, metadata)


def dataclass(cls=None, /, *, frozen: bool = False, **options):
    """``@dataclass`` or ``@dataclass(frozen=True)``, as ``dataclasses`` has it."""

    def wrap(cls):
        if options or not _simple(cls):
            import dataclasses

            return dataclasses.dataclass(cls, frozen=frozen, **options)
        return _process(cls, frozen)

    return wrap if cls is None else wrap(cls)


def _simple(cls) -> bool:
    """Can this module make the class? (else dataclasses does)"""
    for base in cls.__mro__[1:-1]:  # not object
        if "__dataclass_fields__" in base.__dict__ and "__record_fields__" not in base.__dict__:
            return False  # a base made by dataclasses
    own = cls.__dict__
    for name, ann in own.get("__annotations__", {}).items():
        if not isinstance(ann, str):
            return False  # evaluated annotations (no `from __future__ import annotations`): let dataclasses look
        if "ClassVar" in ann or "InitVar" in ann or "KW_ONLY" in ann:
            return False
        value = own.get(name)
        if value is not None and type(value).__name__ == "Field" and not isinstance(value, Field):
            kw_only = getattr(value, "kw_only", None)
            if kw_only is not None and not _is_missing(kw_only):
                return False  # dataclasses.field(kw_only=...)
    return True


def _plain_field(name: str, ann: str, default) -> Field:
    """``name: ann = default`` (or no default): Field(default=...) without its checks (~40% of a class's cost)."""
    f = Field.__new__(Field)
    f.name, f.type, f.default, f.default_factory = name, ann, default, MISSING
    f.init = f.repr = f.compare = True
    f.hash = None
    f.metadata = {}
    return f


def _process(cls, frozen: bool):
    # Each start-path class passes here once per process (~110 of them on a
    # run's path), so this is written for speed: one pass over the fields for
    # every derived tuple. Measured: ~42 -> ~23 us a class (issue 15).
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:-1]):
        for f in base.__dict__.get("__record_fields__", ()):
            found[f.name] = f
    own = cls.__dict__
    anns = own.get("__annotations__", {})
    for name, ann in anns.items():
        value = getattr(cls, name, MISSING)  # an inherited class attribute is a default too, as in dataclasses
        if isinstance(value, Field):
            f = value
            f.name, f.type = name, ann
        elif type(value).__name__ == "Field":  # dataclasses.field(...)
            f = Field(value.default, value.default_factory, value.init, value.repr, value.hash, value.compare,
                      value.metadata)
            f.name, f.type = name, ann
        else:
            f = _plain_field(name, ann, value)
        default = f.default
        if default is not MISSING and isinstance(default, (list, dict, set)):
            # the same error dataclasses raises: one list would be shared by every instance
            raise ValueError(f"mutable default {type(default)} for field {name} is not allowed: "
                             "use default_factory")
        if name in own and (f is value or type(value).__name__ == "Field"):
            # a field(...) in the class body (a plain default is the class attribute already)
            if default is MISSING:
                delattr(cls, name)  # a default_factory, or no default: no class attribute
            else:
                setattr(cls, name, default)
        found[name] = f
    for name, value in own.items():
        if type(value).__name__ == "Field" and name not in anns:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    fields_ = tuple(found.values())
    init_spec, reprs, compares, hashes, match = [], [], [], [], []
    seen_default = False
    for f in fields_:
        if f.init:
            has_default = f.default is not MISSING or f.default_factory is not MISSING
            if seen_default and not has_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            seen_default = seen_default or has_default
            match.append(f.name)
        init_spec.append((f.name, f.init, f.default, f.default_factory))
        if f.repr:
            reprs.append(f.name)
        if f.compare:
            compares.append(f.name)
        if f.compare if f.hash is None else f.hash:
            hashes.append(f.name)

    cls.__record_fields__ = fields_
    cls.__record_frozen__ = frozen
    cls.__record_init__ = tuple(init_spec)
    cls.__record_n_init__ = len(match)
    cls.__record_repr__ = tuple(reprs)
    cls.__record_compare__ = tuple(compares)
    cls.__record_hash__ = tuple(hashes)
    cls.__record_post_init__ = hasattr(cls, "__post_init__")
    cls.__match_args__ = tuple(match)
    cls.__dataclass_fields__ = _FIELDS_VIEW
    cls.__dataclass_params__ = _PARAMS_VIEW
    if not cls.__doc__:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields_)})"

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


class _DataclassView:
    """``__dataclass_fields__``/``__dataclass_params__``, made by dataclasses on first use.

    dataclasses processes a copy of the class (same annotations and field
    defaults, no methods of ours) with init/repr/eq off, so it writes no code;
    its Field objects are what ``dataclasses.fields()`` & co. expect. The
    result is stored on the class, replacing this descriptor."""

    def __init__(self, attr: str):
        self.attr = attr

    def __get__(self, obj, owner=None):
        cls = self._defining_class(owner if owner is not None else type(obj))
        import dataclasses

        ns = {"__annotations__": {f.name: f.type for f in cls.__record_fields__}, "__module__": cls.__module__,
              "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
        for f in cls.__record_fields__:
            ns[f.name] = dataclasses.field(default=f.default if not _is_missing(f.default) else dataclasses.MISSING,
                                           default_factory=(f.default_factory if not _is_missing(f.default_factory)
                                                            else dataclasses.MISSING),
                                           init=f.init, repr=f.repr, hash=f.hash, compare=f.compare,
                                           metadata=f.metadata)
        shadow = dataclasses.dataclass(type(cls.__name__, (), ns), init=False, repr=False, eq=False)
        params = shadow.__dataclass_params__
        params.frozen = cls.__record_frozen__  # as the class behaves (its own methods do the freezing)
        params.init = params.repr = params.eq = True
        type.__setattr__(cls, "__dataclass_fields__", shadow.__dataclass_fields__)
        type.__setattr__(cls, "__dataclass_params__", params)
        return getattr(cls, self.attr)

    @staticmethod
    def _defining_class(cls):
        for c in cls.__mro__:
            if "__record_fields__" in c.__dict__:
                return c
        raise AttributeError("__dataclass_fields__")


_FIELDS_VIEW = _DataclassView("__dataclass_fields__")  # one of each serves every class (``owner`` says which)
_PARAMS_VIEW = _DataclassView("__dataclass_params__")


def fields(class_or_instance) -> tuple[Field, ...]:
    """``dataclasses.fields`` for the classes made here, without importing dataclasses."""
    cls = class_or_instance if isinstance(class_or_instance, type) else type(class_or_instance)
    try:
        return cls.__record_fields__
    except AttributeError:
        import dataclasses

        return dataclasses.fields(class_or_instance)


def replace(obj, /, **changes):
    """``dataclasses.replace`` for the classes made here, without importing
    dataclasses (runtime.py's replace of the spec cost every ``run`` the
    ~9 ms of dataclasses and inspect)."""
    cls = type(obj)
    if not hasattr(cls, "__record_fields__"):
        import dataclasses

        return dataclasses.replace(obj, **changes)
    for f in cls.__record_fields__:
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, it cannot be specified with replace()")
        elif f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return cls(**changes)


def asdict(obj) -> dict:
    """``dataclasses.asdict`` for the classes made here (fields, lists, tuples, dicts; values copied)."""
    if not hasattr(type(obj), "__record_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    return {f.name: _copy(getattr(obj, f.name)) for f in type(obj).__record_fields__}


def _copy(value):
    if hasattr(type(value), "__record_fields__"):
        return asdict(value)
    if "dataclasses" in sys.modules and sys.modules["dataclasses"].is_dataclass(value) \
            and not isinstance(value, type):
        return sys.modules["dataclasses"].asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {_copy(k): _copy(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool, type(None), bytes)):
        return value
    import copy

    return copy.deepcopy(value)


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


def _frozen_error(message: str):
    import dataclasses  # its exception class, so `except FrozenInstanceError` works as for any dataclass

    return dataclasses.FrozenInstanceError(message)


def _frozen_setattr(self, name, value):
    raise _frozen_error(f"cannot assign to field {name!r}")


def _frozen_delattr(self, name):
    raise _frozen_error(f"cannot delete field {name!r}")
