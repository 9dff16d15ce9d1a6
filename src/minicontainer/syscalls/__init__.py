"""The thin syscall layer: the only place that calls the kernel for namespaces
and mounts. ``linux.Linux`` does it for real through ctypes; ``fake.Recorder``
records the calls so the plan interpreter can be unit-tested without root.

Both raise :class:`minicontainer.errors.SyscallError` (which keeps ``errno``).
"""

from minicontainer.syscalls.flags import *  # noqa: F401,F403  (the constants are part of the API)
