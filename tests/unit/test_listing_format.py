"""--format table|json|TEMPLATE on ps, image ls, network ls, stats --no-stream (commands/_format.py),
and the sparklines of stats on a terminal."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from click.testing import CliRunner

from minicontainer.commands import _format as F
from minicontainer.commands import stats as S
from minicontainer.errors import UsageError

pytestmark = pytest.mark.unit


def invoke(*args):
    from minicontainer.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


COLUMNS = (("NAME", "Name"), ("SIZE", "Size"))
ITEMS = [{"Name": "a", "Size": "1 B", "raw": 1}, {"Name": "longer", "Size": "20 KiB", "raw": 20480}]


def listing(fmt):
    out = io.StringIO()
    import click

    with pytest.MonkeyPatch.context() as m:
        m.setattr(click, "echo", lambda text="", **kw: out.write(f"{text}\n"))
        F.print_listing(fmt, ITEMS, fields=lambda i: {k: v for k, v in i.items() if k != "raw"},
                        columns=COLUMNS, as_json=lambda i: {"name": i["Name"], "size": i["raw"]})
    return out.getvalue()


def test_one_listing_three_ways():
    assert listing("table") == "NAME     SIZE\na        1 B\nlonger   20 KiB\n"
    assert json.loads(listing("json")) == [{"name": "a", "size": 1}, {"name": "longer", "size": 20480}]
    assert listing("{{.Name}}\\t{{.Size}}") == "a\t1 B\nlonger\t20 KiB\n"
    with pytest.raises(UsageError, match=r"unknown field \.Nope") as e:
        listing("{{.Nope}}")
    assert ".Name, .Size" in e.value.hint


def test_a_format_that_is_none_of_the_three_is_refused():
    F.check_format("table", "{{.Name}}")
    F.check_format("{{.Name}}", "{{.Name}}")
    with pytest.raises(UsageError, match="invalid --format 'yaml'") as e:
        F.check_format("yaml", "{{.Name}}")
    assert e.value.hint == "use table, json, or a template such as '{{.Name}}'"
    with pytest.raises(UsageError) as e:
        F.check_format("table", "{{.Id}}", table=False)  # inspect has no table
    assert e.value.hint == "use json, or a template such as '{{.Id}}'"


def test_ps_lists_through_the_shared_helper(mc_dirs):
    from minicontainer.container.state import ContainerState, StateStore

    StateStore().reserve(ContainerState(id="c" * 64, name="web", image="mini", status="exited", exit_code=3,
                                        command=["sh", "-c", "exit 3"], created=1.0, finished=2.0))
    r = invoke("ps", "-a", "--format", "{{.Names}} {{.ID}} {{.State}} {{.Command}}")
    assert r.output == f'web {"c" * 12} exited "sh -c \'exit 3\'"\n'
    table = invoke("ps", "-a").output.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert table[1].startswith("c" * 12) and table[1].endswith("web") and "Exited (3)" in table[1]
    assert json.loads(invoke("ps", "-a", "--format", "json").output)[0]["name"] == "web"
    bad = invoke("ps", "--format", "yaml")  # a usage error, before anything is read
    assert bad.exit_code == 2 and "'yaml' (hint: use table, json, or a template" in bad.output


def _import(tmp_path, name):
    tar = tmp_path / f"{name}.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("f")
        info.size = 3
        tf.addfile(info, io.BytesIO(name.encode()[:3].ljust(3)))
    assert invoke("image", "import", str(tar), name).exit_code == 0


def test_image_ls_format(mc_dirs, tmp_path):
    _import(tmp_path, "one")
    _import(tmp_path, "two:v2")
    lines = invoke("image", "ls", "--format", "{{.Repository}}|{{.Tag}}|{{.Size}}|{{.CreatedSince}}").output
    assert sorted(lines.splitlines()) == ["one|latest|3 B|Less than a second ago",
                                         "two|v2|3 B|Less than a second ago"]
    raw = json.loads(invoke("image", "ls", "--format", "json").output)
    assert sorted(i["name"] for i in raw) == ["one", "two:v2"] and all(len(i["id"]) == 64 for i in raw)
    assert invoke("image", "ls").output.splitlines()[0].split() == ["NAME", "ID", "SIZE", "CREATED", "SOURCE"]
    quiet = invoke("image", "ls", "-q").output.split()
    assert len(quiet) == 2 and all(len(i) == 12 for i in quiet)


def test_network_ls_format(mc_dirs):
    from minicontainer.network.store import NetworkStore

    NetworkStore().define("app", subnet="10.89.0.0/24")
    assert invoke("network", "ls", "--format", "{{.Name}} {{.Subnet}} {{.Gateway}} {{.Containers}}").output \
        == "app 10.89.0.0/24 10.89.0.1 0\n"
    (net,) = json.loads(invoke("network", "ls", "--format", "json").output)
    assert (net["name"], net["subnet"], net["containers"]) == ("app", "10.89.0.0/24", 0)
    table = invoke("network", "ls").output.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "SUBNET", "BRIDGE", "CONTAINERS"]
    assert table[1].split()[1:3] == ["app", "10.89.0.0/24"]


MIB = 1024 * 1024


def sample(**over):
    values = dict(id="a" * 64, name="web", cpu_percent=19.8765, cpus=0.2, cpu_throttled_usec=1_520_000,
                  memory_usage=16 * MIB, memory_limit=64 * MIB, memory_percent=25.0, memory_peak=80 * MIB,
                  pids_current=3, pids_limit=20, io_read_bytes=4096, io_write_bytes=8 * MIB)
    values.update(over)
    return S.Sample(**values)


def test_stats_template_fields_are_the_tables_cells():
    f = S.fields(sample(), host_memory=None)
    assert F.render_template("{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}} {{.Container}}", f) \
        == "web 19.88% 16 MiB / 64 MiB 3 / 20 aaaaaaaaaaaa"


def test_sparkline_scales_to_the_limit_and_leaves_unwatched_time_blank():
    # one reading per 3 s slot, rising from 0 to the limit
    points = [(t, t / 57 * 100) for t in range(0, 60, 3)]
    line = S.sparkline(points, now=59.0, top=100, width=20, span=60)
    assert len(line) == 20
    assert line[-1] == "█" and line[1] == "▁"
    assert list(line[1:]) == sorted(line[1:], key=S.BARS.index)  # never falls
    assert S.sparkline([(58.0, 50)], now=59.0, top=100, width=20, span=60) == " " * 19 + "▅"
    assert S.sparkline([(58.0, 500)], now=59.0, top=100, width=4, span=60)[-1] == "█"  # above the limit: full
    assert S.sparkline([(1.0, 50)], now=100.0, top=100) == " " * S.CHART_WIDTH  # older than a minute
    assert S.sparkline([(99.0, 50)], now=100.0, top=0) == " " * S.CHART_WIDTH  # nothing to scale to


def test_history_keeps_a_minute_and_scales_each_chart():
    h = S.History()
    for t in range(0, 100):
        h.add(float(t), [sample(cpu_percent=20.0, memory_usage=(t % 2) * 64 * MIB)])
    pts = h.points["a" * 64]
    assert pts[0][0] > 99 - 60 and len(pts) == 60
    cpu, mem = h.charts(99.0, [sample()], host_memory=None)["a" * 64]
    assert set(cpu) == {"█"}  # 20% of one CPU against --cpus 0.2: at the limit
    assert set(mem) == {"█"}  # each 3 s slot peaked at the 64 MiB limit
    # no limits: CPU against one CPU, memory against the minute's own peak
    cpu, mem = h.charts(99.0, [sample(cpus=None, memory_limit=None)], host_memory=None)["a" * 64]
    assert set(cpu) == {"▂"} and set(mem) == {"█"}
    h.add(100.0, [])  # it exited: its history goes
    assert h.points == {}


def test_the_table_gets_the_chart_columns_only_when_given():
    plain = S.format_table([sample()], host_memory=None)
    assert "CPU (1 MIN)" not in plain and "▁" not in plain
    charted = S.format_table([sample()], host_memory=None, charts={"a" * 64: ("▁▂", "█▇")})
    header, line = charted.splitlines()
    assert header.endswith("CPU (1 MIN)   MEM (1 MIN)") and line.endswith("▁▂            █▇")
