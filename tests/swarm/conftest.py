"""Garbage from a module's tests is collected before the next module starts.

A socket or transport leaked in a reference cycle (a connection accepted as its listener
closed, a dial to a peer that was leaving: races of the wall-clock tests on loopback) warns
when the cyclic collector frees it, and pytest reports that warning (an error here) in
whichever test is running then: in ``test_superseed.py``'s property test, whose 200
examples allocate enough to start a collection, a leak of an earlier module failed a test
that reads no clock and opens no socket. Collecting at each module's end reports a leak in
the module that made it, and keeps the pure tests' results their own.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _collect_the_modules_garbage() -> Iterator[None]:
    yield
    gc.collect()
