"""A virtual-time run raises the collector's first threshold while it runs, then restores it."""

from __future__ import annotations

import gc

import pytest

from hubswarm import vtime


def test_the_collector_threshold_is_raised_during_a_run_and_restored_after() -> None:
    before = gc.get_threshold()

    async def main() -> tuple[int, int, int]:
        return gc.get_threshold()

    during = vtime.run(main())
    assert during[0] == max(vtime.GC_THRESHOLD0, before[0])
    assert during[1:] == before[1:]
    assert gc.get_threshold() == before


def test_the_threshold_is_restored_when_the_run_fails() -> None:
    before = gc.get_threshold()

    async def main() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        vtime.run(main())
    assert gc.get_threshold() == before
