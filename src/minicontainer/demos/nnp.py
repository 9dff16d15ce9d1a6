"""demo nnp: a setuid-root program under no_new_privs, and without it."""

from __future__ import annotations

from minicontainer.demos import Demo, Step, contains, field_value

# What a setuid program gets: its effective uid, its capabilities, and
# whether no_new_privs is set (then execve ignored the setuid bit).
SHOWID_C = r"""/* Print who this process is after execve: uids, capabilities, no_new_privs. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char line[256], cap[64] = "?", nnp[16] = "?";
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "CapEff: %63s", cap);
        sscanf(line, "NoNewPrivs: %15s", nnp);
    }
    printf("uid=%d euid=%d CapEff=%s NoNewPrivs=%s\n", (int)getuid(), (int)geteuid(), cap, nnp);
    return 0;
}
"""


def _ids(expect_euid: str, expect_nnp: str, caps_zero: bool):
    def check(out):
        line = next((ln for ln in out.lines if ln.startswith("uid=")), None)
        if line is None:
            return "the program printed nothing"
        euid, nnp, cap = field_value(line, "euid"), field_value(line, "NoNewPrivs"), field_value(line, "CapEff")
        if euid != expect_euid or nnp != expect_nnp:
            return f"euid={euid} NoNewPrivs={nnp}, expected euid={expect_euid} NoNewPrivs={expect_nnp}"
        if caps_zero != (cap is not None and int(cap, 16) == 0):
            return f"CapEff={cap}: expected {'none' if caps_zero else 'some'}"
        return None
    return check


def steps(ctx):
    return [
        Step(
            shows="a tiny setuid-root program that prints who it runs as",
            command="cat $T/showid.c && mkdir -p $T/bin && gcc -static -O2 -o $T/bin/showid $T/showid.c && "
                    "chmod 4755 $T/bin/showid && ls -l $T/bin/showid",
            notice="-rwsr-xr-x root: the s is the setuid bit; executing it should make anyone euid 0",
            check=contains("-rwsr-xr-x"),
        ),
        Step(
            shows="run it as user 1000 in a default container (no_new_privs is on)",
            command="minicontainer run --rm -u 1000 -v $T/bin:/demo:ro mini /demo/showid",
            notice="euid=1000, no capabilities, NoNewPrivs=1: with no_new_privs set, execve ignores the setuid "
                   "bit (prctl(2) PR_SET_NO_NEW_PRIVS), so the program gains nothing",
            check=_ids("1000", "1", caps_zero=True),
        ),
        Step(
            shows="the same with --security-opt no-new-privileges=false (Docker's default)",
            command="minicontainer run --rm -u 1000 --security-opt no-new-privileges=false -v $T/bin:/demo:ro "
                    "mini /demo/showid | tee $T/ids",
            notice="euid=0, and capabilities: the setuid bit worked, user 1000 became root",
            check=_ids("0", "0", caps_zero=False),
        ),
        Step(
            shows="which capabilities it gained, decoded",
            command="capsh --decode=$(grep -o 'CapEff=[0-9a-f]*' $T/ids | cut -d= -f2)",
            notice="the container's bounding set, Docker's default for root (chown, kill, net_bind_service, "
                   "setuid ...), never more: no sys_admin, no sys_module, since the bounding set was cut before "
                   "the exec. With no_new_privs it got none of them",
            check=lambda out: contains("cap_chown")(out) or (
                "it gained cap_sys_admin" if "cap_sys_admin" in out.text else None),
        ),
    ]


DEMO = Demo(
    name="nnp",
    title="no_new_privs and a setuid-root program",
    intro="""
        A setuid-root program runs as root whoever starts it: that is how passwd and sudo work, and how a
        planted binary in an image would give a container's unprivileged user root again. minicontainer sets
        no_new_privs on every container (Docker needs --security-opt no-new-privileges for it); then execve
        ignores setuid bits and file capabilities.
    """,
    steps=steps,
    files={"showid.c": SHOWID_C},
    needs=(("gcc", "apt-get install gcc libc6-dev (./scripts/setup does)"), ("capsh", "apt-get install libcap2-bin")),
)
