"""Constants from <sched.h>, <sys/mount.h> and <linux/prctl.h> (values are the
kernel ABI, identical on every Linux architecture we support)."""

# clone(2) / unshare(2) namespace flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
    "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
}

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24

MOUNT_FLAG_NAMES = {
    MS_RDONLY: "ro",
    MS_NOSUID: "nosuid",
    MS_NODEV: "nodev",
    MS_NOEXEC: "noexec",
    MS_REMOUNT: "remount",
    MS_NOATIME: "noatime",
    MS_BIND: "bind",
    MS_MOVE: "move",
    MS_REC: "rec",
    MS_PRIVATE: "private",
    MS_SLAVE: "slave",
    MS_STRICTATIME: "strictatime",
}

# umount2(2)
MNT_DETACH = 2

# mount_setattr(2) (Linux 5.12): struct mount_attr's attr_set/attr_clr bits,
# and the *at() flags it takes
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000  # the mount shows its files' owners through a user namespace's maps
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
# open_tree(2) and move_mount(2) (Linux 5.2): a detached copy of a mount, attached elsewhere
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4

# prctl(2) options called through ctypes (python-prctl lacks them)
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def mount_flag_names(flags: int) -> list[str]:
    """``MS_BIND|MS_REC`` -> ["bind", "rec"], for --explain and error messages."""
    return [name for bit, name in MOUNT_FLAG_NAMES.items() if flags & bit]
