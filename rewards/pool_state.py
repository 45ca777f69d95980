"""The dispatcher's records in `rewards.pool`: a queued call (`Job`), a piece of it sent to one
worker (`Chunk`), one slot of the pool and the process in it (`Slot`), and small helpers."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from rewards.base import RewardResult
from rewards.config import RewardConfig

# A reward is named by a spec string (built with `load_fn(spec, cfg)` inside the worker) or by
# a whole RewardConfig (its configured, possibly weighted reward: `build_reward(cfg)`).
RewardSpec = str | RewardConfig


def resolve(future: Future, *, result: object = None, error: BaseException | None = None) -> None:
    """Set `future`'s outcome unless it is done already. Its caller may cancel it from another
    thread at any moment (asyncio.wrap_future cancels it when an HTTP client hangs up), so a
    `done()` check followed by set_result() could still raise InvalidStateError here."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


@dataclass(eq=False)  # hashed by identity: a key of the dispatcher's queue
class Job:
    name: str
    blobs: list[bytes | None]  # each (response, sample) pickled; None where that failed
    results: list[RewardResult | None]
    remaining: int
    future: Future
    seq: int  # arrival order
    served: int = 0  # when it last got a worker (0: never): the least recently served goes next


@dataclass
class Chunk:
    job: Job
    indices: list[int]  # item indices of job.blobs, in order


@dataclass
class Slot:
    """One slot of the pool and the process in it (none while waiting to retry a start)."""

    slot: int
    process: multiprocessing.process.BaseProcess | None = None
    conn: Connection | None = None
    state: str = "waiting"  # starting | idle | busy | waiting (no process: retry at `deadline`) | stopped
    chunk: Chunk | None = None
    chunk_id: int = 0
    pos: int = 0  # index into chunk.indices of the item being graded
    cancel_sent: bool = False
    graded: int = 0  # items graded by this process
    start_failures: int = 0  # starts failed in a row (sets the backoff)
    # monotonic time by which the item or the start must finish; for a waiting slot, when to
    # try starting a process again
    deadline: float = math.inf
    retired: list = field(default_factory=list)  # recycled processes not yet reaped


def spec_strings(spec: RewardSpec) -> list[str]:
    return [t.fn for t in spec.resolved_terms()] if isinstance(spec, RewardConfig) else [spec]


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MiB (0 where /proc is not available)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def stop_slots(slots: list[Slot], grace_s: float) -> None:
    """Ask every worker to exit; kill those still running after `grace_s` (busy ones)."""
    processes = [p for w in slots for p in w.retired]
    for w in slots:
        if w.process is None:
            continue
        try:
            w.conn.send(None)
        except (OSError, ValueError):
            pass
        processes.append(w.process)
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)
    for w in slots:
        if w.conn is not None:
            w.conn.close()
        w.process, w.conn, w.state, w.retired = None, None, "stopped", []
