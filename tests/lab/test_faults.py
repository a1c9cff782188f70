"""Faults as data: runs.json keeps each fault's fields, and the report reads them, not prose.

The fixture (data/runs.json) holds a client-server kill_hub, a p2p and a hybrid run with a
corrupt peer (their ``detail`` text carries no numbers: the cells must come from the fields),
a hybrid kill_peers and a not-applicable revoked_token, and one run as runs.json held it
before faults had fields (at, kind and detail only).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hubswarm.errors import LabError
from hubswarm.lab.metrics import CorruptOutcome, FaultCompletion, FaultEvent, summarize
from hubswarm.lab.report import build_table, load_runs, write_report

FIXTURE = Path(__file__).parent / "data" / "runs.json"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_faults_load_as_fields() -> None:
    runs, failures, notes = load_runs(FIXTURE)
    by = {(r.scenario, r.architecture): r for r in runs}
    (kill_hub,) = by["fault", "client-server"].faults
    assert kill_hub == FaultEvent(2.5, "kill_hub", "SIGKILL hub pid 4242", count=1)
    (corrupt,) = by["corrupt", "p2p"].faults
    assert corrupt.corrupt == CorruptOutcome(
        peers=(4,), bad_pieces=5, bans=2, honest_verified=3, honest=3
    )
    assert corrupt.corrupt.contained
    _, kill_peers, revoked = by["corrupt", "hybrid"].faults
    assert kill_peers.victims == (1,)
    assert not revoked.applied
    # Written before faults had fields: the defaults, nothing invented.
    (old,) = by["old", "p2p"].faults
    assert old == FaultEvent(1.5, "kill_peers", "killed peers [2]")
    assert (old.count, old.applied, old.victims, old.corrupt) == (1, True, (), None)
    assert [f.error for f in failures] == ["the seed was not ready in time"]
    assert notes == ["fixture: synthetic runs"]


def test_fault_completion_is_read_by_field_and_stored_as_before() -> None:
    runs, _, _ = load_runs(FIXTURE)
    cs = next(r for r in runs if r.architecture == "client-server")
    (done,) = summarize(cs).fault_completion
    assert done == FaultCompletion(kind="kill_hub", at=2.5, completed=0.0)
    assert done == ("kill_hub", 2.5, 0.0)  # runs.json's "metrics" keep the same list form


def test_the_table_reads_the_fields_not_the_detail() -> None:
    runs, _, _ = load_runs(FIXTURE)
    rows = {row.feature: row for row in build_table(runs)}
    security = rows["Security"]
    assert "corrupt peer: 5 bad pieces detected, 2 bans, 3/3 honest clients verified" in (
        security.p2p
    )
    assert security.p2p.endswith(
        "; a corrupting peer was detected, banned and did not stop the others"
    )
    assert "corrupt peer: 0 bad pieces detected, 0 bans, 2/3 honest clients verified" in (
        security.hybrid
    )
    assert security.hybrid.endswith("; corrupt peer: detection NOT seen, 2/3 verified")
    assert "corrupt" not in security.cs
    # The summary verdict judges the claims only (the corrupt peers are in the cells).
    assert "corrupt" not in security.verdict
    reliability = rows["Reliability"]
    assert "kill_hub at 2.5 s: 0% of pending clients still completed (N=8)" in reliability.cs
    assert "kill_peers at 1.5 s" in reliability.p2p  # the old run's fault, by its fields


def test_report_from_a_stored_runs_json(tmp_path: Path) -> None:
    runs, failures, notes = load_runs(FIXTURE)
    report = write_report(runs, tmp_path, failures=failures, notes=notes, now=NOW)
    md = (report.folder / "report.md").read_text(encoding="utf-8")
    html = (report.folder / "report.html").read_text(encoding="utf-8")
    assert "5 bad pieces detected, 2 bans, 3/3 honest clients verified" in md
    assert "5 bad pieces detected, 2 bans, 3/3 honest clients verified" in html
    # The detail, for people, is listed as it was written.
    assert "fault kill_hub at 2.5 s: SIGKILL hub pid 4242" in md
    assert "the seed was not ready in time" in md
    # Stored again, the faults keep every field.
    again = json.loads((report.folder / "runs.json").read_text(encoding="utf-8"))
    stored = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert [r["faults"] for r in again["runs"]][:3] == [r["faults"] for r in stored["runs"]][:3]


def test_a_fault_that_cannot_be_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="victims"):
        FaultEvent(1.0, "kill_peers", count=1, victims=(1, 2))
    with pytest.raises(ValueError, match="verified"):
        CorruptOutcome(peers=(4,), bad_pieces=1, bans=1, honest_verified=4, honest=3)
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    data["runs"][0]["faults"][0]["count"] = 0
    bad = tmp_path / "runs.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(LabError, match=r"not a lab runs\.json"):
        load_runs(bad)
