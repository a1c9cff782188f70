"""Where a campaign's sim runs execute: this process, local worker processes, or Dask.

A sim run is a function of its plan and seed (:mod:`hubswarm.lab.sim`), so the runs of a
campaign are independent: any worker may take any of them, in any order, and the campaign
puts the outcomes back in the order of its plans. Netns and app runs measure wall time on
this host, so they stay in the campaign, one after another, and never overlap these.

- ``jobs = 1``: one worker thread of this process, one run at a time.
- ``jobs > 1``: a :class:`concurrent.futures.ProcessPoolExecutor` of that many (spawned)
  processes.
- ``dask = ADDRESS``: a ``dask.distributed.Client`` on that scheduler; each run is one
  ``client.submit``, collected with ``as_completed``. Dask is imported only then.

A worker gets a :class:`SimJob` (the plan and the architecture: frozen dataclasses, picklable),
makes its own scratch folder, and returns a RunResult, or the RunFailure a LabError makes,
as a run in the campaign's own process would.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from hubswarm.errors import LabError
from hubswarm.lab.metrics import RunFailure, RunResult
from hubswarm.lab.scenario import RunPlan
from hubswarm.lab.sim import run_sim

__all__ = ["Outcome", "SimJob", "execute", "resolve_jobs", "run_job"]

Outcome = RunResult | RunFailure
# Seconds to reach a Dask scheduler: distributed's own default (comm.timeouts.connect).
DASK_CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class SimJob:
    """One sim run of a campaign: its place in the campaign's order, the plan, the architecture."""

    index: int
    plan: RunPlan
    architecture: str

    def failure(self, error: str) -> RunFailure:
        """The RunFailure of this run, as the report lists it."""
        scenario = self.plan.scenario
        return RunFailure(self.architecture, scenario.name, self.plan.n, error, scenario.path)


def run_job(job: SimJob) -> Outcome:
    """Run one job in a scratch folder of this machine's (a worker's) temp dir; blocking."""
    with tempfile.TemporaryDirectory(prefix="hsw-sim-") as folder:
        try:
            return run_sim(job.plan, job.architecture, Path(folder))
        except LabError as exc:
            return job.failure(str(exc))


def resolve_jobs(jobs: int) -> int:
    """``--jobs``: 0 means one per CPU this process may run on."""
    if jobs < 0:
        raise LabError(f"--jobs must be 0 (one per CPU) or more, got {jobs}")
    return jobs or len(os.sched_getaffinity(0)) or 1


async def execute(
    jobs: Sequence[SimJob],
    on_done: Callable[[SimJob, Outcome], None],
    *,
    workers: int = 1,
    dask: str | None = None,
) -> None:
    """Run every job (on Dask if ``dask`` names a scheduler, else on ``workers`` local
    workers), calling ``on_done`` as each one ends. Raises LabError if Dask is unreachable."""
    if not jobs:
        return
    if dask is not None:
        await _on_dask(dask, jobs, on_done)
    elif workers <= 1:
        for job in jobs:
            on_done(job, await asyncio.to_thread(run_job, job))
    else:
        await _in_processes(min(workers, len(jobs)), jobs, on_done)


async def _in_processes(
    workers: int, jobs: Sequence[SimJob], on_done: Callable[[SimJob, Outcome], None]
) -> None:
    # Spawned, not forked: this process has threads (the campaign's, rich's status line),
    # and a fork copies their locks in whatever state they are. Dask's workers spawn too.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()
    try:
        pending: dict[asyncio.Future[Outcome], SimJob] = {
            asyncio.wrap_future(pool.submit(run_job, job), loop=loop): job for job in jobs
        }
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool as exc:
                    # A worker died (killed, out of memory): this run, and the runs the pool
                    # still held, are failures; the campaign goes on.
                    outcome = job.failure(f"worker process died: {exc}")
                on_done(job, outcome)
    finally:
        # Queued runs are dropped; a run a worker already started ends within its scenario's
        # timeout (a process cannot be interrupted mid-run from here).
        pool.shutdown(wait=False, cancel_futures=True)


async def _on_dask(
    address: str, jobs: Sequence[SimJob], on_done: Callable[[SimJob, Outcome], None]
) -> None:
    # Imported here: dask costs a second to import, and only --dask needs it.
    from dask.distributed import Client, KilledWorker, as_completed

    try:
        # distributed's constructors carry no annotations.
        client = await Client(  # type: ignore[no-untyped-call]
            address, asynchronous=True, timeout=DASK_CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError) as exc:
        raise LabError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    try:
        futures = {
            # pure=False: every run is run, never taken from Dask's cache of results.
            client.submit(run_job, job, pure=False): job
            for job in jobs
        }
        async for future in as_completed(futures):  # type: ignore[no-untyped-call]
            job = futures[future]
            try:
                outcome = await future
            except KilledWorker as exc:
                outcome = job.failure(f"Dask worker died: {exc}")
            on_done(job, outcome)
    finally:
        await client.close()
