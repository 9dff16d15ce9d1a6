"""The thin syscall layer: the only code that calls the kernel to set a
container up. ``linux.Linux`` does it for real (ctypes on libc and
python-prctl; the only libc binding in the project); ``fake.Recorder``
records the calls, and ``fake.FakeChannels`` stands in for the runtime's
pipes, so the interpreter runs whole plans in unit tests without root.

Both raise :class:`minicontainer.errors.SyscallError` (which keeps ``errno``).
"""

from minicontainer.syscalls.flags import *  # noqa: F401,F403  (the constants are part of the API)
