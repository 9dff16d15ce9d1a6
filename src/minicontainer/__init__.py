"""minicontainer: a small, readable container runtime.

Start reading at container/: runtime.py (the order of a run), plan.py (the
steps of a run, as data, made of steps.py's vocabulary) and interpreter.py
(the one function that carries out each step type).
"""

__version__ = "0.1.0"
