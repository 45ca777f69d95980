"""A pool of worker processes that runs reward functions with a per-item timeout.

User reward functions are arbitrary code: they may raise, loop forever, or take their
interpreter down. `RewardPool` runs them in `workers` child processes started with the
multiprocessing "spawn" context (a fresh interpreter, so it is safe to start from a process
that already runs threads, e.g. a uvicorn server or a Ray actor). Each worker builds its
functions itself at start from spec strings (`rewards.registry.load_fn`), so the functions
never need to be picklable; only specs, Samples and RewardResults cross the pipe.

What one item yields:
    the function returns          -> its RewardResult (a float is wrapped)
    the function raises           -> score 0, error "<Type>: <message>"  (registry.safe_grade)
    it runs longer than timeout_s -> score 0, error "timeout after <timeout_s>s"; the worker is
                                     killed and a fresh one started in its place
    it ends its process           -> score 0, error "worker crashed (exit code N)"; replaced
Results come back in item order. `grade` raises only for an unknown reward name or a closed
pool; no item outcome reaches the caller as an exception. As with any "spawn" pool, a script
that starts one must do so under `if __name__ == "__main__":` (workers re-import the main module).

How work moves: `submit` splits a call into chunks (at most `chunk_size` items, and at least
as many chunks as workers) and queues them. One dispatcher thread hands chunks to idle
workers, reads one result message per item, and watches the running item's deadline
(deadline = time the item started + timeout_s; an item starts when its chunk is sent or the
previous item's result arrives). When a worker is killed or dies, the unfinished rest of its
chunk goes back to the front of the queue. A replacement worker that does not build its
functions within start_timeout_s (say, an import that hangs) is killed and its slot left empty,
like one that fails to build them; with every slot empty, items get an error at once instead of
waiting. Several threads may call `grade` at once.

    from rewards.pool import RewardPool
    with RewardPool({"mine": "my_rewards.py:score"}, workers=2, timeout_s=5.0) as pool:
        results = pool.grade("mine", [(response, sample), ...])
        print(pool.stats())
"""

from __future__ import annotations

import collections
import math
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

from rewards.base import RewardResult, Sample
from rewards.config import RewardConfig
from rewards.registry import build_reward, load_fn, safe_grade

SPAWN_HINT = (
    "Workers are spawned and re-import the main module: a script that starts a RewardPool must "
    "do so under `if __name__ == '__main__':`"
)

# A reward is named by a spec string (built with `load_fn(spec, cfg)` inside the worker) or by
# a whole RewardConfig (its configured, possibly weighted reward: `build_reward(cfg)`).
RewardSpec = str | RewardConfig


class PoolStartError(RuntimeError):
    """A worker could not build a reward function (bad spec, import error) or did not start."""


@dataclass(frozen=True)
class PoolStats:
    """Counters since the pool started (for metrics). `errors` = exceptions + timeouts + crashes."""

    items: int  # items graded, whatever the outcome
    exceptions: int  # items whose function raised (or returned something that is not a reward)
    timeouts: int  # items that ran past timeout_s (their worker was killed)
    crashes: int  # items whose worker died while grading them, or that found no worker able to start
    restarts: int  # worker processes started to replace a killed or dead one
    alive: int  # worker processes running now (starting, idle or busy)

    @property
    def errors(self) -> int:
        return self.exceptions + self.timeouts + self.crashes


def _build(spec: RewardSpec, cfg: RewardConfig):
    return build_reward(spec) if isinstance(spec, RewardConfig) else load_fn(spec, cfg)


def _worker_main(conn: Connection, rewards: dict[str, RewardSpec], cfg: RewardConfig) -> None:
    """Body of one worker process: build every function, then grade chunks until told to stop.

    Protocol (parent <- worker): ("ready", None) once, or ("load_error", message) and exit;
    then one ("result", RewardResult) per item of each chunk, in order.
    Protocol (parent -> worker): (name, [(response, sample), ...]) per chunk; None to stop.
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fns = {}
    for name, spec in rewards.items():
        try:
            fns[name] = _build(spec, cfg)
        except BaseException as exc:  # noqa: BLE001 -- any failure to build is reported, not raised
            conn.send(("load_error", f"reward {name!r}: {type(exc).__name__}: {exc}"))
            return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message is None:
            return
        name, items = message
        fn = fns[name]
        for response, sample in items:
            result = safe_grade(fn, response, sample)
            try:
                conn.send(("result", result))
            except Exception as exc:  # noqa: BLE001 -- pickling failed before anything was written
                note = f"info dropped: it does not pickle ({type(exc).__name__}: {exc})"
                conn.send(("result", replace(result, info={"pool": note})))


def _resolve(future: Future, *, result: object = None, error: BaseException | None = None) -> None:
    """Set `future`'s outcome unless it is done already. Its caller may cancel it from another
    thread at any moment (asyncio.wrap_future cancels it when an HTTP client hangs up), so a
    `done()` check followed by set_result() could still raise InvalidStateError here and stop
    the dispatcher thread; losing that race just means nobody waits for the outcome any more."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


@dataclass
class _Job:
    name: str
    items: list[tuple[str, Sample]]
    results: list[RewardResult | None]
    remaining: int
    future: Future


@dataclass
class _Chunk:
    job: _Job
    indices: list[int]  # item indices of job.items, in order


@dataclass
class _Worker:
    slot: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    state: str = "starting"  # starting | idle | busy | dead
    chunk: _Chunk | None = None
    pos: int = 0  # index into chunk.indices of the item being graded
    deadline: float = math.inf  # time.monotonic() by which the running item (or the start) must finish


class RewardPool:
    """Worker processes grading `rewards` ({name: spec}) with a per-item timeout.

    rewards:    {name: "mcq" | "module:function" | "path/file.py:function" | RewardConfig}
    cfg:        values for the built-in graders (correct/wrong/... scores); default RewardConfig()
    workers:    number of worker processes
    timeout_s:  limit per item, in seconds
    chunk_size: most items sent to a worker at once (fewer messages; a timeout re-queues the rest)
    start_timeout_s: how long `start` waits for every worker to build its functions (and the
                     dispatcher for each replacement worker)
    """

    def __init__(
        self,
        rewards: Mapping[str, RewardSpec],
        *,
        cfg: RewardConfig | None = None,
        workers: int = 2,
        timeout_s: float = 10.0,
        chunk_size: int = 32,
        start_timeout_s: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"RewardPool: workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"RewardPool: timeout_s must be > 0, got {timeout_s}")
        if not rewards:
            raise ValueError("RewardPool: no rewards given")
        self._rewards = dict(rewards)
        self._cfg = cfg if cfg is not None else RewardConfig()
        self._n_workers = workers
        self.timeout_s = float(timeout_s)
        self._chunk_size = chunk_size
        self._start_timeout_s = start_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._submitted: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._pending: collections.deque[_Chunk] = collections.deque()
        # Writing a byte wakes the dispatcher from wait(); both ends never block (a full pipe
        # already holds a pending wake-up).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()  # guards the counters and _closed
        self._counts = {"items": 0, "exceptions": 0, "timeouts": 0, "crashes": 0, "restarts": 0}
        self._closed = False
        self._started = False
        self._broken: str | None = None  # why no worker can be started any more
        self._failed: str | None = None  # why the dispatcher thread stopped (a bug), if it did
        self._thread: threading.Thread | None = None

    @property
    def names(self) -> list[str]:
        return list(self._rewards)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RewardPool:
        """Start the workers and wait until each has built its functions.

        Raises PoolStartError naming the reward when a function cannot be built (bad spec,
        import error), or when a worker does not come up within start_timeout_s."""
        if self._started:
            return self
        if self._closed:
            raise RuntimeError("RewardPool is closed; create a new one")
        self._started = True
        self._workers = [self._spawn(slot) for slot in range(self._n_workers)]
        deadline = time.monotonic() + self._start_timeout_s
        try:
            for w in self._workers:
                if not w.conn.poll(max(0.0, deadline - time.monotonic())):
                    raise PoolStartError(f"reward worker did not start within {self._start_timeout_s:g}s")
                kind, payload = self._recv_or_exit(w)
                if kind == "exit":
                    raise PoolStartError(f"reward worker failed to start: {payload}. {SPAWN_HINT}")
                if kind != "ready":
                    raise PoolStartError(f"reward worker failed to start: {payload}")
                w.state, w.deadline = "idle", math.inf
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._dispatch_loop, name="reward-pool", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the dispatcher and the workers; calls still waiting get RuntimeError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._wake()
            self._thread.join()
        self._stop_workers()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> RewardPool:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ grading
    def submit(self, name: str, items: Sequence[tuple[str, Sample]]) -> Future:
        """Queue `items` ([(response, sample)]) for reward `name`; the Future resolves to
        list[RewardResult] in item order. Thread-safe."""
        if name not in self._rewards:
            raise KeyError(f"unknown reward {name!r}; this pool has {sorted(self._rewards)}")
        future: Future = Future()
        items = list(items)
        if not items:
            future.set_result([])
            return future
        with self._lock:
            if self._failed is not None:
                raise RuntimeError(self._failed)
            if self._closed or self._thread is None:
                raise RuntimeError("RewardPool is not running: use `with RewardPool(...)` or call start()")
            self._submitted.put(_Job(name, items, [None] * len(items), len(items), future))
            self._wake()  # under the lock: close() cannot have closed the pipe yet
        return future

    def grade(self, name: str, items: Sequence[tuple[str, Sample]]) -> list[RewardResult]:
        """Grade `items` with reward `name`; blocks until every item has a result."""
        return self.submit(name, items).result()

    def stats(self) -> PoolStats:
        with self._lock:
            alive = sum(w.state != "dead" for w in self._workers)
            return PoolStats(**self._counts, alive=alive)

    # ------------------------------------------------------------------ dispatcher thread
    def _spawn(self, slot: int) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._rewards, self._cfg),
            name=f"reward-worker-{slot}",
            daemon=True,
        )
        process.start()
        child_conn.close()  # only the child holds its end: its exit shows up here as EOF
        return _Worker(
            slot=slot, process=process, conn=parent_conn, deadline=time.monotonic() + self._start_timeout_s
        )

    def _recv_or_exit(self, w: _Worker) -> tuple[str, object]:
        try:
            return w.conn.recv()
        except (EOFError, OSError):
            w.process.join(timeout=5.0)
            return "exit", f"worker exited (exit code {w.process.exitcode})"

    def _dispatch_loop(self) -> None:
        try:
            self._dispatch_until_closed()
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            with self._lock:
                self._failed = f"reward pool dispatcher failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            for job in self._jobs_in_flight():
                _resolve(job.future, error=RuntimeError(self._failed or "RewardPool closed while grading"))

    def _dispatch_until_closed(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            self._take_submitted()
            self._assign()
            waitables = [self._wake_r]
            for w in self._workers:
                if w.state != "dead":
                    waitables += [w.conn, w.process.sentinel]
            deadlines = [w.deadline for w in self._workers if w.state in ("busy", "starting")]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = set(wait(waitables, timeout))
            if self._wake_r in ready:
                self._drain_wake()
            for w in list(self._workers):
                if w.state == "dead":
                    continue
                if w.conn in ready or w.process.sentinel in ready:
                    self._read_worker(w)
            now = time.monotonic()
            for w in list(self._workers):
                if w.state == "busy" and now >= w.deadline:
                    self._on_timeout(w)
                elif w.state == "starting" and now >= w.deadline:
                    self._replace(w, f"worker did not start within {self._start_timeout_s:g}s")

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _take_submitted(self) -> None:
        while True:
            try:
                job = self._submitted.get_nowait()
            except queue.Empty:
                return
            if self._broken is not None:
                for i in range(len(job.items)):
                    self._finish(job, i, RewardResult(score=0.0, error=self._broken), "crashes")
                continue
            n = len(job.items)
            size = max(1, min(self._chunk_size, math.ceil(n / self._n_workers)))
            for lo in range(0, n, size):
                self._pending.append(_Chunk(job, list(range(lo, min(n, lo + size)))))

    def _assign(self) -> None:
        idle = collections.deque(w for w in self._workers if w.state == "idle")
        while idle and self._pending:
            chunk = self._pending.popleft()
            if chunk.job.future.cancelled():  # its caller went away (e.g. an HTTP client hung up)
                continue
            w = idle.popleft()
            try:
                w.conn.send((chunk.job.name, [chunk.job.items[i] for i in chunk.indices]))
            except (OSError, ValueError):  # the worker died since its last message
                self._pending.appendleft(chunk)
                self._replace(w, None)
                continue
            w.state, w.chunk, w.pos = "busy", chunk, 0
            w.deadline = time.monotonic() + self.timeout_s

    def _read_worker(self, w: _Worker) -> None:
        """Read every message the worker has sent; handle its exit once its pipe is drained."""
        while True:
            try:
                if not w.conn.poll():
                    if w.process.is_alive():
                        return
                    raise EOFError
                kind, payload = w.conn.recv()
            except (EOFError, OSError):
                w.process.join(timeout=5.0)
                self._on_exit(w, w.process.exitcode)
                return
            if kind == "ready":
                w.state, w.deadline = "idle", math.inf
            elif kind == "load_error":
                self._on_exit(w, None, load_error=payload)
                return
            else:
                self._on_result(w, payload)

    def _on_result(self, w: _Worker, result: RewardResult) -> None:
        chunk = w.chunk
        self._finish(chunk.job, chunk.indices[w.pos], result, "exceptions" if result.error else None)
        w.pos += 1
        if w.pos == len(chunk.indices):
            w.state, w.chunk, w.deadline = "idle", None, math.inf
        else:
            w.deadline = time.monotonic() + self.timeout_s

    def _on_timeout(self, w: _Worker) -> None:
        w.process.kill()
        w.process.join(timeout=5.0)
        error = f"timeout after {self.timeout_s:g}s"
        self._fail_current(w, error, "timeouts")
        self._replace(w, None)

    def _on_exit(self, w: _Worker, exitcode: int | None, load_error: str | None = None) -> None:
        if w.state == "busy":
            self._fail_current(w, f"worker crashed (exit code {exitcode})", "crashes")
            self._replace(w, None)
        elif w.state == "starting":
            # A replacement that cannot build its functions will not do better on a retry.
            self._replace(w, load_error or f"worker exited during start (exit code {exitcode})")
        else:  # an idle worker died (killed from outside): start another
            self._replace(w, None)

    def _fail_current(self, w: _Worker, error: str, kind: str) -> None:
        """Give the running item an error result; put the rest of its chunk back in front."""
        chunk = w.chunk
        self._finish(chunk.job, chunk.indices[w.pos], RewardResult(score=0.0, error=error), kind)
        rest = chunk.indices[w.pos + 1 :]
        if rest:
            self._pending.appendleft(_Chunk(chunk.job, rest))
        w.chunk = None

    def _replace(self, w: _Worker, start_failure: str | None) -> None:
        """Retire worker `w`; start a fresh one in its slot unless it failed to start."""
        w.conn.close()
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5.0)
        w.state, w.deadline = "dead", math.inf
        if start_failure is None:
            try:
                self._workers[w.slot] = self._spawn(w.slot)
            except OSError as exc:  # e.g. out of processes or file descriptors
                start_failure = f"cannot start a process: {exc}"
            else:
                with self._lock:
                    self._counts["restarts"] += 1
                return
        if all(x.state == "dead" for x in self._workers):
            self._broken = f"reward worker failed to start: {start_failure}"
            while self._pending:
                chunk = self._pending.popleft()
                for i in chunk.indices:
                    self._finish(chunk.job, i, RewardResult(score=0.0, error=self._broken), "crashes")

    def _finish(self, job: _Job, index: int, result: RewardResult, kind: str | None) -> None:
        job.results[index] = result
        job.remaining -= 1
        with self._lock:
            self._counts["items"] += 1
            if kind is not None:
                self._counts[kind] += 1
        if job.remaining == 0:
            _resolve(job.future, result=job.results)

    def _jobs_in_flight(self) -> list[_Job]:
        jobs = [c.job for c in self._pending] + [w.chunk.job for w in self._workers if w.chunk]
        while True:
            try:
                jobs.append(self._submitted.get_nowait())
            except queue.Empty:
                return jobs

    def _stop_workers(self) -> None:
        for w in self._workers:
            if w.state == "dead":
                continue
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            w.process.join(timeout=2.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5.0)
            w.conn.close()
            w.state = "dead"
