"""minicontainer: a small, readable container runtime.

Start reading at runtime.py (the order of the phases), plan.py (what each
phase does, as data) and apply.py (how each step is carried out).
"""

__version__ = "0.1.0"
