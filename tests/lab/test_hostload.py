"""Host CPU load: the /proc/stat parser, the busy fraction, and the report's CPU-bound flag."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LabError
from hubswarm.lab import hostload
from hubswarm.lab.hostload import CpuSample, busy_fraction, parse_pid_stat, parse_proc_stat
from hubswarm.lab.report import write_report
from tests.lab.synthetic import p2p_run

# The first lines of a real /proc/stat (2 cores).
PROC_STAT = """cpu  4705 356 584 3699176 23 0 12 7 0 0
cpu0 1393 280 326 1848802 13 0 8 3 0 0
cpu1 3312 76 258 1850374 10 0 4 4 0 0
intr 114930548 20 9 0 0 0 0 0 0 1 0 0 0 0
ctxt 1990473
"""


def test_parse_real_layout() -> None:
    sample = parse_proc_stat(PROC_STAT)
    total = 4705 + 356 + 584 + 3699176 + 23 + 0 + 12 + 7
    assert sample == CpuSample(busy=total - 3699176 - 23, total=total, kernel=584 + 0 + 12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cpu0 1 2 3 4 5 6 7 8\n",
        "cpu 1 2 3\n",
        "cpu a b c d e f g h\n",
        "cpu 1 2 3 -4 5 6 7 8\n",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(LabError):
        parse_proc_stat(text)


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=8, max_size=10))
def test_parse_any_counters(values: list[int]) -> None:
    sample = parse_proc_stat("cpu  " + " ".join(map(str, values)) + "\n")
    assert sample.total == sum(values[:8])
    assert sample.busy == sample.total - values[3] - values[4]


# A real /proc/PID/stat of a lab agent, its command name made awkward (spaces, parentheses).
PID_STAT = (
    "4242 (py (the) agent) S 4200 4242 4200 0 -1 4194560 12345 0 3 0 37 9 0 0 20 0 2 0 "
    "7654321 123456789 4321 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 0"
)


def test_parse_pid_stat_counts_fields_after_the_command_name() -> None:
    assert parse_pid_stat(PID_STAT) == (37, 9)


@pytest.mark.parametrize(
    "text",
    ["", "4242 (agent S 1 2", "4242 (agent) S 1 2 3", PID_STAT.replace(" 37 9 ", " x 9 ")],
)
def test_parse_pid_stat_rejects_malformed(text: str) -> None:
    with pytest.raises(LabError):
        parse_pid_stat(text)


@given(st.text(max_size=40), st.integers(0, 2**40), st.integers(0, 2**40))
def test_parse_pid_stat_any_name_and_times(name: str, utime: int, stime: int) -> None:
    fields = ["S", *["0"] * 10, str(utime), str(stime), *["0"] * 10]
    assert parse_pid_stat(f"1 ({name}) " + " ".join(fields)) == (utime, stime)


@given(st.text(max_size=200))
def test_parse_pid_stat_garbage_is_a_lab_error_or_two_counts(text: str) -> None:
    try:
        utime, stime = parse_pid_stat(text)
    except LabError:
        return
    assert utime >= 0
    assert stime >= 0


def test_process_cpu_of_this_process_and_of_none(tmp_path: Path) -> None:
    cpu = hostload.process_cpu(os.getpid())
    assert cpu is not None
    assert cpu[0] > 0
    assert cpu[1] >= 0
    assert hostload.process_cpu(os.getpid(), tmp_path) is None  # no such /proc


def test_busy_fraction() -> None:
    assert busy_fraction(CpuSample(100, 1000), CpuSample(400, 1400)) == pytest.approx(0.75)
    assert busy_fraction(CpuSample(100, 1000), CpuSample(100, 1000)) is None
    assert busy_fraction(None, CpuSample(1, 2)) is None
    assert busy_fraction(CpuSample(1, 2), None) is None


def test_sample_this_host(tmp_path: Path) -> None:
    assert hostload.sample(tmp_path / "missing") is None
    now = hostload.sample()
    assert now is not None  # the suite runs on Linux
    assert 0 <= now.busy <= now.total


def test_report_flags_cpu_bound_runs(tmp_path: Path) -> None:
    runs = [
        dataclasses.replace(p2p_run(2), host_cpu_busy=0.35),
        dataclasses.replace(p2p_run(4), host_cpu_busy=0.97, first_copy_at=0.3),
    ]
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = write_report(runs, tmp_path, now=now)
    md = (report.folder / "report.md").read_text()
    assert "35%" in md
    assert "97% ⚠ CPU-bound" in md
    assert "CPU-bound (host cores >= 90% busy): sweep N=4 p2p." in md
    assert "sweep N=2 p2p" not in md.split("CPU-bound (host cores")[1].split("\n")[0]
    # When every piece was out of the seed, beside F / u_s (p2p_run: 1 MiB at 4 MiB/s);
    # "-" for the run that did not record it.
    assert "| 0.30 s (1.20× F/u_s) |" in md
    assert md.count("every piece out") == 1
    n2_row = next(line for line in md.splitlines() if line.startswith("| sweep | p2p | 2 |"))
    assert "F/u_s" not in n2_row
