"""minicontainer: a small, readable container runtime.

Start reading at container/: runtime.py (the order of a run), plan.py (the
steps of a run, as data, made of steps.py's vocabulary) and interpreter.py
(the one function that carries out each step type).

From Python: ``minicontainer.run(image, argv, memory="64m", ...)`` and
``minicontainer.plan(...)`` (api.py).
"""

__version__ = "0.1.0"


def __getattr__(name):
    # The Python API (api.py), loaded on first use: the CLI imports this
    # package on every start and must not pay for it.
    if name in ("run", "plan", "Result"):
        from minicontainer import api

        return getattr(api, name)
    raise AttributeError(f"module 'minicontainer' has no attribute {name!r}")
