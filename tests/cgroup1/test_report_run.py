"""run --report on this (hybrid, v1) host, and the HTML chart rendered by headless Chromium.

The report's numbers are checked against what the run did (an OOM kill under
-m, a CPU limit, a pids limit); the page is drawn by a real browser to a PNG,
and the PNG must show the charts: not blank, the limit lines in their colour.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from cgtools import scale
from helpers import PY, mc
from pngread import count_colour, read_png

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]

MiB = 1 << 20
MEMORY_HOG = "yes | tr \\\\n x | head -c 1048576000 | grep n"  # the seed's exercise: grep holds one endless line


def run_report(tmp_path, *args, name="r.json"):
    path = tmp_path / name
    proc = mc("run", "--rm", "--report", str(path), *args, timeout=scale(120))
    return proc, json.loads(path.read_text())


def test_oom_report_has_samples_limits_and_the_kill(clean_host):
    proc, data = run_report(clean_host, "-m", "80m", "--cpus", "0.5", "--pids-limit", "20", "mini",
                            "sh", "-c", MEMORY_HOG)
    assert proc.returncode == 137, proc.stderr
    assert data["limits"]["memory"] == 80 * MiB and data["limits"]["cpus"] == 0.5 and data["limits"]["pids"] == 20
    samples = data["samples"]
    assert len(samples) >= 3
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert max(s["memory_peak"] for s in samples) >= 70 * MiB  # it grew to the limit
    assert samples[-1]["oom_kills"] >= 1
    assert data["exit"]["reason"] == "oom-kill" and data["exit"]["code"] == 137
    assert "OOM killer" in data["exit"]["message"]
    assert data["cleanup"] == {"ok": True, "cgroup_removed": True, "error": None}
    assert data["namespaces"]["pid"]["new"] is True and data["namespaces"]["user"]["new"] is False


def test_pids_limit_report(clean_host):
    proc, data = run_report(clean_host, "--pids-limit", "10", "mini", "sh", "-c",
                            "for i in $(seq 20); do sleep 2 & done; wait")
    assert data["limits"]["pids"] == 10
    assert max(s["pids_current"] for s in data["samples"]) <= 10
    assert data["samples"][-1]["pids_max_hits"] >= 1
    assert data["exit"]["reason"] == "pids-limit", data["exit"]


def test_run_without_report_does_not_load_the_sampler():
    proc = subprocess.run([PY, "-X", "importtime", "-m", "minicontainer", "run", "--rm", "mini", "true"],
                          capture_output=True, text=True, timeout=scale(60))
    assert proc.returncode == 0, proc.stderr
    assert "minicontainer.cgroups" in proc.stderr  # importtime did list the modules
    assert "minicontainer.report" not in proc.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package to render the page "
                                             "(scripts/test installs it: apt-get install chromium)")
def test_the_chart_renders_in_headless_chromium(clean_host):
    from minicontainer.report_html import LIMIT_COLOUR, OOM_COLOUR, USAGE_COLOUR

    proc, _ = run_report(clean_host, "-m", "80m", "--cpus", "0.5", "--pids-limit", "20", "mini",
                         "sh", "-c", MEMORY_HOG)
    assert proc.returncode == 137, proc.stderr
    page, png = clean_host / "r.html", clean_host / "r.png"
    mc("report", str(clean_host / "r.json"), "--html", str(page), check=0)
    shot = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={clean_host / 'chrome'}",
         "--window-size=800,1000", f"--screenshot={png}", page.as_uri()],
        capture_output=True, text=True, timeout=scale(120))
    assert png.exists(), shot.stderr[-2000:]
    width, height, rows = read_png(png.read_bytes())
    assert (width, height) == (800, 1000)

    def rgb(colour):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))

    white = count_colour(rows, (255, 255, 255))
    assert white < width * height * 0.95, "the page is blank"
    # three limit lines, each 3 px high and 620 px long; the first two charts are in the window
    assert count_colour(rows, rgb(LIMIT_COLOUR)) >= 2 * 3 * 600
    assert count_colour(rows, rgb(OOM_COLOUR)) >= 3 * 100  # the OOM kill's vertical line
    assert count_colour(rows, rgb(USAGE_COLOUR), tolerance=40) >= 500  # the usage curves
