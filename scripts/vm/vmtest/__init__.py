"""Host-side helpers of ``scripts/vm-test``: set up and boot the cgroup v2 test VM.

- ``bzimage``   pull the uncompressed vmlinux out of a Debian vmlinuz (pure)
- ``kmod``      read a module's dependencies from its .modinfo section (pure)
- ``cpio``      write a "newc" cpio archive, the format of an initramfs (pure)
- ``assets``    the cached, idempotent setup: apt packages, kernel, initramfs
- ``machine``   the qemu command line, the job directory and the exit status

Only the standard library is used: this runs before any venv exists.
"""
