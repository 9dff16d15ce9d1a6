"""Outbound NAT for a bridge network, as nftables rules. Pure: this module
only writes the rules' text; syscalls/linux.py hands it to nft(8).

docker gives each bridge network a MASQUERADE rule in iptables' nat table:
what a container sends out through another interface of the host leaves
with the host's address, so the answers find their way back (conntrack
undoes the translation on them). Here each network gets a table of its own,
named after its bridge, so ``network rm`` removes exactly its rules by
deleting the table, and nothing else of the host's ruleset is touched::

    table ip minicontainer-mcbr-0123456789 {
        chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
            ip saddr 10.89.0.0/24 oifname != "mcbr-0123456789" masquerade
        }
        chain forward {
            type filter hook forward priority filter; policy accept;
            iifname "mcbr-0123456789" oifname "mc0" drop
            iifname "mcbr-0123456789" oifname "mcbr-*" oifname != "mcbr-0123456789" drop
        }
    }

The forward chain is docker's DOCKER-ISOLATION rules: nothing is routed
from one network's bridge into another's (``mc0`` is the default
network's, ``mcbr-*`` the others'), so two networks reach the outside and
not each other; a container on both (``network connect``) talks to each on
its own interface.

An ``--internal`` network gets no masquerade but a forward chain that drops
whatever would cross between its bridge and another interface (docker's
DOCKER-ISOLATION rules): its containers have no default route already, and
these rules keep it so even for one that adds a route of its own.

Forwarding itself is the net.ipv4.ip_forward sysctl of the namespace the
bridge is in (docker turns it on as well). No accept rule is added for
forwarded packets: in nftables an accept ends only its own base chain, and
a drop in another table's chain at the same hook still applies (nft(8),
"VERDICT STATEMENT"), so an accept of ours could not open a host firewall
that forwards nothing; such a host keeps its policy.

Every command is written so the whole list is one atomic transaction that
can be applied again (a second container on the network, a concurrent run):
``table`` creates the table if missing, ``delete table`` empties it, and
the rest makes it anew.
"""

from __future__ import annotations

FAMILY = "ip"
DEFAULT_BRIDGE = "mc0"  # the default network's bridge (network/store.py names them so) ...
BRIDGE_PREFIX = "mcbr-"  # ... and the start of every other network's
IP_FORWARD = "net/ipv4/ip_forward"  # /proc/sys/..., per network namespace


def table_name(bridge: str) -> str:
    return f"minicontainer-{bridge}"


def setup_commands(bridge: str, subnet: str, internal: bool) -> list[str]:
    """The nft commands that make the network's table (nft -f, one per line)."""
    t = f"{FAMILY} {table_name(bridge)}"
    out = [f"table {t}", f"delete table {t}", f"add table {t}"]
    if internal:
        out += [
            f"add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}",
            f'add rule {t} forward iifname "{bridge}" oifname != "{bridge}" drop',
            f'add rule {t} forward oifname "{bridge}" iifname != "{bridge}" drop',
        ]
    else:
        out += [
            f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
            f'add rule {t} postrouting ip saddr {subnet} oifname != "{bridge}" masquerade',
            f"add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}",
        ]
        if bridge != DEFAULT_BRIDGE:
            out.append(f'add rule {t} forward iifname "{bridge}" oifname "{DEFAULT_BRIDGE}" drop')
        out.append(f'add rule {t} forward iifname "{bridge}" oifname "{BRIDGE_PREFIX}*" oifname != "{bridge}" drop')
    return out


def remove_commands(bridge: str) -> list[str]:
    """Delete the network's table; nothing happens if it is not there."""
    t = f"{FAMILY} {table_name(bridge)}"
    return [f"table {t}", f"delete table {t}"]


def shell(commands: list[str]) -> str:
    """The commands as one line to type: nft reads ';'-separated commands too."""
    return "nft '" + "; ".join(c.replace("'", "'\\''") for c in commands) + "'"
