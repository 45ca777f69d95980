"""A pool of worker processes that runs reward functions with a per-item timeout.

User reward functions are arbitrary code: they may raise, loop forever, return odd objects, or
take their interpreter down. `RewardPool` runs them in `workers` child processes started with
the multiprocessing "spawn" context (a fresh interpreter, so it is safe to start from a process
that already runs threads, e.g. a uvicorn server or a Ray actor). Each worker builds its
functions itself from spec strings (`rewards.registry.load_fn`); the text of every plug-in file
("path/file.py:fn") is read once, at start, and handed to each worker, so an edited file does not
change what a replacement worker serves; a replacement that finds the file defining a
"module:function" (or entry point) changed since start refuses to serve. Only plain data crosses
the pipe (`rewards.pool_worker`).

What one item yields:
    the function returns          -> its RewardResult (a float is wrapped; fields made plain data)
    the function raises           -> score 0, error "<Type>: <message>"  (registry.safe_grade)
    it runs longer than timeout_s -> score 0, error "timeout after <timeout_s>s"; the worker is
                                     killed and a fresh one started in its place
    it ends its process           -> score 0, error "worker crashed (exit code N)"; replaced
    the pool cannot handle it     -> score 0, error naming why (a sample that does not pickle,
                                     e.g. nested too deeply; a bug in the pool): kind "internal"
Results come back in item order. `grade` raises only for an unknown reward name or a closed
pool; no item outcome reaches the caller as an exception. As with any "spawn" pool, a script
that starts one must do so under `if __name__ == "__main__":` (workers re-import the main module).

How work moves: `submit` pickles each item (in the caller's thread) and queues the call. One
dispatcher thread splits calls into chunks (at most `chunk_size` items, and at least as many
chunks as workers) and hands each one that falls idle a chunk of the call served least
recently, so every call gets its share of the pool however large the others are. It reads one result per item and
watches the running item's deadline (the time it started + timeout_s). When a worker is killed
or dies, the unfinished rest of its chunk goes back to the front. A call cancelled by its caller
(`future.cancel()`, e.g. an HTTP client that hung up) loses its queued chunks, and a worker
grading one of its chunks stops before its next item. A replacement that cannot start (an import
that fails or hangs past start_timeout_s, no file descriptors left) is retried with backoff
(0.5 s, doubling, at most 30 s); while no worker at all is running, items get an error at once
instead of waiting. Workers are recycled (stopped and replaced) after `max_items_per_worker`
items or once their resident memory passes `max_worker_rss_mb` (Linux). Any exception in the
dispatcher costs the item at hand, never the dispatcher. Several threads may call `grade` at once.

    from rewards.pool import RewardPool
    with RewardPool({"mine": "my_rewards.py:score"}, workers=2, timeout_s=5.0) as pool:
        results = pool.grade("mine", [(response, sample), ...])
        print(pool.stats(), pool.health())
"""

from __future__ import annotations

import collections
import itertools
import math
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import wait

from rewards.base import RewardResult, Sample
from rewards.config import RewardConfig
from rewards.pool_state import Chunk, Job, RewardSpec, Slot, resolve, rss_mb, spec_strings, stop_slots
from rewards.pool_worker import from_plain, worker_main
from rewards.registry import read_sources

SPAWN_HINT = (
    "Workers are spawned and re-import the main module: a script that starts a RewardPool must "
    "do so under `if __name__ == '__main__':`"
)
BACKOFF_S = (0.5, 30.0)  # first and longest wait before retrying a worker that failed to start
HEARTBEAT_S = 1.0  # the dispatcher wakes at least this often (health() sees it alive)
STALL_S = 30.0  # a dispatcher silent for longer is reported broken


class PoolStartError(RuntimeError):
    """A worker could not build a reward function (bad spec, import error) or did not start."""


@dataclass(frozen=True)
class PoolStats:
    """Counters since the pool started (for metrics). `errors` = every item that failed."""

    items: int  # items graded, whatever the outcome
    exceptions: int  # items whose function raised (or returned something that is not a reward)
    timeouts: int  # items that ran past timeout_s (their worker was killed)
    crashes: int  # items whose worker died while grading them, or that found no worker running
    internal: int  # items the pool itself could not handle (a sample that does not pickle, ...)
    restarts: int  # worker processes started to replace a killed, dead or failed one
    recycles: int  # workers retired after max_items_per_worker items or above max_worker_rss_mb
    alive: int  # worker processes running now (starting, idle or busy)

    @property
    def errors(self) -> int:
        return self.exceptions + self.timeouts + self.crashes + self.internal


class RewardPool:
    """Worker processes grading `rewards` ({name: spec}) with a per-item timeout.

    rewards:    {name: "mcq" | "module:function" | "path/file.py:function" | RewardConfig}
    cfg:        values for the built-in graders (correct/wrong/... scores); default RewardConfig()
    workers:    number of worker processes
    timeout_s:  limit per item, in seconds (finite, > 0)
    chunk_size: most items sent to a worker at once (fewer messages; a timeout re-queues the rest)
    start_timeout_s: how long `start` waits for every worker to build its functions (and the
                     dispatcher for each replacement worker)
    max_items_per_worker / max_worker_rss_mb: recycle a worker after that many items / above
                     that resident memory (None: never)
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
        max_items_per_worker: int | None = None,
        max_worker_rss_mb: float | None = None,
    ) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"RewardPool: workers must be an integer >= 1, got {workers!r}")
        for name, value in (("timeout_s", timeout_s), ("start_timeout_s", start_timeout_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"RewardPool: {name} must be a finite number > 0, got {value!r}")
        if chunk_size < 1:
            raise ValueError(f"RewardPool: chunk_size must be >= 1, got {chunk_size}")
        if max_items_per_worker is not None and max_items_per_worker < 1:
            raise ValueError(f"RewardPool: max_items_per_worker must be >= 1, got {max_items_per_worker}")
        if max_worker_rss_mb is not None and not max_worker_rss_mb > 0:
            raise ValueError(f"RewardPool: max_worker_rss_mb must be > 0, got {max_worker_rss_mb}")
        if not rewards:
            raise ValueError("RewardPool: no rewards given")
        self._rewards = dict(rewards)
        self._cfg = cfg if cfg is not None else RewardConfig()
        self._n_workers = workers
        self.timeout_s = float(timeout_s)
        self._chunk_size = chunk_size
        self._start_timeout_s = float(start_timeout_s)
        self._max_items = max_items_per_worker
        self._max_rss = max_worker_rss_mb
        self._sources: dict[str, str] = {}  # plug-in files, read at start
        self._fingerprint: dict[str, str] = {}  # other files defining the functions, at start
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[Slot] = []
        self._submitted: queue.SimpleQueue[Job] = queue.SimpleQueue()
        # Calls waiting for a worker, each with its chunks; the least recently served goes next.
        self._queue: dict[Job, collections.deque[Chunk]] = {}
        self._chunk_ids = itertools.count(1)  # also orders `Job.served`
        self._job_ids = itertools.count(1)
        # Writing a byte wakes the dispatcher from wait(); both ends never block (a full pipe
        # already holds a pending wake-up).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()  # guards the counters, _closed and the wake pipe's life
        self._counts = dict.fromkeys(
            ("items", "exceptions", "timeouts", "crashes", "internal", "restarts", "recycles"), 0
        )
        self._closed = False
        self._started = False
        self._start_error: str | None = None  # why the last start of a worker failed
        self._failed: str | None = None  # why the dispatcher thread stopped (a bug), if it did
        self._beat = time.monotonic()  # the dispatcher's last turn
        self._thread: threading.Thread | None = None

    @property
    def names(self) -> list[str]:
        return list(self._rewards)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RewardPool:
        """Read the plug-in files, start the workers and wait until each has built its functions.

        Raises PoolStartError naming the reward when a function cannot be built (bad spec,
        import error), or when a worker does not come up within start_timeout_s."""
        if self._started:
            return self
        if self._closed:
            raise RuntimeError("RewardPool is closed; create a new one")
        self._started = True
        specs = [s for spec in self._rewards.values() for s in spec_strings(spec)]
        self._sources = read_sources(specs)
        self._workers = [Slot(slot) for slot in range(self._n_workers)]
        deadline = time.monotonic() + self._start_timeout_s
        try:
            for w in self._workers:
                self._spawn(w)
            for w in self._workers:
                if not w.conn.poll(max(0.0, deadline - time.monotonic())):
                    raise PoolStartError(f"reward worker did not start within {self._start_timeout_s:g}s")
                kind, payload = self._recv_or_exit(w)
                if kind == "exit":
                    raise PoolStartError(f"reward worker failed to start: {payload}. {SPAWN_HINT}")
                if kind != "ready":
                    raise PoolStartError(f"reward worker failed to start: {payload}")
                self._fingerprint = self._fingerprint or payload
                w.state, w.deadline = "idle", math.inf
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._dispatch_loop, name="reward-pool", daemon=True)
        self._thread.start()
        return self

    def close(self, grace_s: float = 2.0) -> None:
        """Stop the dispatcher and the workers (those still busy after `grace_s` are killed);
        calls still waiting get RuntimeError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake()
        if self._thread is not None:
            self._thread.join(timeout=STALL_S)
        stop_slots(self._workers, grace_s)
        if self._thread is None or not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    def __enter__(self) -> RewardPool:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ grading
    def submit(self, name: str, items: Sequence[tuple[str, Sample]]) -> Future:
        """Queue `items` ([(response, sample)]) for reward `name`; the Future resolves to
        list[RewardResult] in item order. Cancelling it drops the items not yet graded.
        Thread-safe."""
        if name not in self._rewards:
            raise KeyError(f"unknown reward {name!r}; this pool has {sorted(self._rewards)}")
        future: Future = Future()
        blobs, results = [], []
        for i, item in enumerate(items):
            try:
                blobs.append(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
                results.append(None)
            except Exception as exc:  # noqa: BLE001 -- e.g. RecursionError: only this item fails
                why = f"{type(exc).__name__}: {exc}"
                blobs.append(None)
                results.append(RewardResult(score=0.0, error=f"item {i} cannot be sent to a worker: {why}"))
        failed = sum(b is None for b in blobs)
        job = Job(name, blobs, results, len(blobs) - failed, future, next(self._job_ids))
        with self._lock:
            if self._failed is not None:
                raise RuntimeError(self._failed)
            if self._closed or self._thread is None:
                raise RuntimeError("RewardPool is not running: use `with RewardPool(...)` or call start()")
            self._counts["items"] += failed
            self._counts["internal"] += failed
            if job.remaining == 0:
                future.set_result(results)
                return future
            self._submitted.put(job)
            self._wake()  # under the lock: close() cannot have closed the pipe yet
        future.add_done_callback(self._on_done)
        return future

    def grade(self, name: str, items: Sequence[tuple[str, Sample]]) -> list[RewardResult]:
        """Grade `items` with reward `name`; blocks until every item has a result."""
        return self.submit(name, items).result()

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(**self._counts, alive=self._live())

    def health(self) -> dict[str, object]:
        """{"status": "ok" | "degraded" | "broken", "workers", "workers_alive", "detail"}: broken
        when the dispatcher has stopped or stalled, or no worker process is running."""
        with self._lock:
            closed, failed, live = self._closed, self._failed, self._live()
        ready = sum(w.state in ("idle", "busy") for w in self._workers)
        silent = time.monotonic() - self._beat
        status, detail = "ok", None
        if closed or self._thread is None:
            status, detail = "broken", "the pool is not running"
        elif failed is not None or not self._thread.is_alive():
            status, detail = "broken", failed or "the dispatcher thread stopped"
        elif silent > STALL_S:
            status, detail = "broken", f"the dispatcher has not run for {silent:.0f}s"
        elif live == 0:
            status, detail = "broken", f"no worker running; retrying. Last start failure: {self._start_error}"
        elif ready < self._n_workers:
            status, detail = "degraded", f"{ready} of {self._n_workers} workers ready"
        return {"status": status, "workers": self._n_workers, "workers_alive": live, "detail": detail}

    def _live(self) -> int:
        """Slots with a process, or whose process is being replaced right now (read from other
        threads too: a slot between its old process and the new one must not look empty)."""
        return sum(
            w.state in ("starting", "idle", "busy") or (w.state == "waiting" and w.deadline == math.inf)
            for w in self._workers
        )

    def _on_done(self, future: Future) -> None:
        if future.cancelled():  # wake the dispatcher: it stops the call's chunks
            with self._lock:
                if not self._closed:
                    self._wake()

    # ------------------------------------------------------------------ dispatcher thread
    def _dispatch_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                try:
                    self._turn()
                except Exception as exc:  # noqa: BLE001 -- a bug here must not stop the pool
                    self._internal_error(exc)
        except BaseException as exc:
            with self._lock:
                self._failed = f"reward pool dispatcher failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            for job in self._jobs_in_flight():
                resolve(job.future, error=RuntimeError(self._failed or "RewardPool closed while grading"))

    def _turn(self) -> None:
        self._beat = time.monotonic()
        self._take_submitted()
        self._send_cancels()
        self._assign()
        waitables = [self._wake_r]
        for w in self._workers:
            if w.process is not None:
                waitables += [w.conn, w.process.sentinel]
        deadlines = [w.deadline for w in self._workers if w.state != "idle"]
        timeout = min([HEARTBEAT_S, *(max(0.0, d - time.monotonic()) for d in deadlines)])
        ready = set(wait(waitables, timeout))
        if self._wake_r in ready:
            self._drain_wake()
        for w in self._workers:
            if w.process is not None and (w.conn in ready or w.process.sentinel in ready):
                self._guarded(self._read_worker, w)
        now = time.monotonic()
        for w in self._workers:
            if now < w.deadline:
                continue
            if w.state == "busy":
                self._guarded(self._on_timeout, w)
            elif w.state == "starting":
                self._start_failed(w, f"worker did not start within {self._start_timeout_s:g}s")
            elif w.state == "waiting":
                self._spawn_counted(w)
        for w in self._workers:
            w.retired = [p for p in w.retired if p.is_alive()]

    def _guarded(self, handle, w: Slot) -> None:
        """handle(w); an exception costs the worker's current item and the worker, nothing more."""
        try:
            handle(w)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc, w)

    def _internal_error(self, exc: BaseException, w: Slot | None = None) -> None:
        error = f"reward pool error: {type(exc).__name__}: {exc}"
        if w is not None and w.chunk is not None:
            self._fail_current(w, error, "internal")
        if w is not None:
            self._retire(w)
            self._spawn_counted(w)
        else:
            time.sleep(0.05)  # a fault outside any worker: do not spin on it

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
                break
            todo = [i for i, blob in enumerate(job.blobs) if blob is not None]
            size = max(1, min(self._chunk_size, math.ceil(len(todo) / self._n_workers)))
            self._queue[job] = collections.deque(
                Chunk(job, todo[lo : lo + size]) for lo in range(0, len(todo), size)
            )
        self._fail_queue_if_no_worker()

    def _send_cancels(self) -> None:
        for w in self._workers:
            if w.state == "busy" and not w.cancel_sent and w.chunk.job.future.cancelled():
                w.cancel_sent = True
                try:
                    w.conn.send(("cancel", w.chunk_id))
                except (OSError, ValueError):  # it died: its exit is read below
                    pass

    def _assign(self) -> None:
        idle = collections.deque(w for w in self._workers if w.state == "idle")
        while idle and self._queue:
            job = min(self._queue, key=lambda j: (j.served, j.seq))
            chunks = self._queue[job]
            if job.future.cancelled():  # its caller went away (e.g. an HTTP client hung up)
                del self._queue[job]
                continue
            chunk = chunks.popleft()
            if not chunks:
                del self._queue[job]
            w = idle.popleft()
            w.chunk_id = job.served = next(self._chunk_ids)
            try:
                w.conn.send(("grade", w.chunk_id, job.name, [job.blobs[i] for i in chunk.indices]))
            except (OSError, ValueError):  # the worker died since its last message
                self._requeue(chunk)
                self._retire(w)
                self._spawn_counted(w)
                continue
            w.state, w.chunk, w.pos, w.cancel_sent = "busy", chunk, 0, False
            w.deadline = time.monotonic() + self.timeout_s

    def _requeue(self, chunk: Chunk) -> None:
        """Put `chunk` first in its call's line."""
        self._queue.setdefault(chunk.job, collections.deque()).appendleft(chunk)

    def _read_worker(self, w: Slot) -> None:
        """Read every message the worker has sent; handle its exit once its pipe is drained."""
        while w.process is not None:
            try:
                if not w.conn.poll():
                    if w.process.is_alive():
                        return
                    raise EOFError
                data = w.conn.recv_bytes()
            except (EOFError, OSError):
                w.process.join(timeout=5.0)
                self._on_exit(w, w.process.exitcode)
                return
            try:
                kind, payload = pickle.loads(data)
            except Exception as exc:  # noqa: BLE001 -- costs the item at hand, not the pool
                raise RuntimeError(f"unreadable message from a worker: {type(exc).__name__}: {exc}") from exc
            if kind == "ready" and w.state == "starting":
                changed = sorted(f for f, digest in self._fingerprint.items() if payload.get(f) != digest)
                if changed:  # the served set is fixed at start: never run a newer version beside it
                    self._start_failed(w, f"{', '.join(changed)} changed since the pool started; restart it")
                else:
                    w.state, w.deadline, w.start_failures = "idle", math.inf, 0
            elif kind == "load_error" and w.state == "starting":
                self._start_failed(w, payload)
            elif kind == "result" and w.state == "busy":
                result = from_plain(payload)
                self._advance(w, result, "exceptions" if result.error else None)
            elif kind == "cancelled" and w.state == "busy" and payload == w.chunk_id:
                self._chunk_done(w)
            else:
                raise RuntimeError(f"unexpected message {kind!r} from a worker in state {w.state!r}")

    def _advance(self, w: Slot, result: RewardResult, kind: str | None) -> None:
        chunk = w.chunk
        self._finish(chunk.job, chunk.indices[w.pos], result, kind)
        w.pos += 1
        w.graded += 1
        if w.pos == len(chunk.indices):
            self._chunk_done(w)
        else:
            w.deadline = time.monotonic() + self.timeout_s

    def _chunk_done(self, w: Slot) -> None:
        w.state, w.chunk, w.deadline = "idle", None, math.inf
        worn = self._max_items is not None and w.graded >= self._max_items
        if worn or (self._max_rss is not None and rss_mb(w.process.pid) > self._max_rss):
            try:
                w.conn.send(None)  # it exits by itself; reaped later
            except (OSError, ValueError):
                pass
            w.retired.append(w.process)
            w.conn.close()
            w.process, w.conn = None, None
            with self._lock:
                self._counts["recycles"] += 1
            self._spawn(w)

    def _on_timeout(self, w: Slot) -> None:
        w.process.kill()
        w.process.join(timeout=5.0)
        self._fail_current(w, f"timeout after {self.timeout_s:g}s", "timeouts")
        self._retire(w)
        self._spawn_counted(w)

    def _on_exit(self, w: Slot, exitcode: int | None) -> None:
        if w.state == "starting":
            self._start_failed(w, f"worker exited during start (exit code {exitcode})")
            return
        if w.state == "busy":
            self._fail_current(w, f"worker crashed (exit code {exitcode})", "crashes")
        self._retire(w)  # a busy worker that died, or an idle one killed from outside
        self._spawn_counted(w)

    def _fail_current(self, w: Slot, error: str, kind: str) -> None:
        """Give the running item an error result; put the rest of its chunk back in front."""
        chunk = w.chunk
        self._finish(chunk.job, chunk.indices[w.pos], RewardResult(score=0.0, error=error), kind)
        rest = chunk.indices[w.pos + 1 :]
        if rest:
            self._requeue(Chunk(chunk.job, rest))
        w.chunk = None

    def _spawn(self, w: Slot) -> None:
        """Start a process in slot `w` (state "starting"); raises OSError when none can start."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        try:
            process = self._ctx.Process(
                target=worker_main,
                args=(child_conn, self._rewards, self._cfg, self._sources),
                name=f"reward-worker-{w.slot}",
                daemon=True,
            )
            process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()  # only the child holds its end: its exit shows up here as EOF
        w.process, w.conn, w.graded = process, parent_conn, 0
        w.state, w.deadline = "starting", time.monotonic() + self._start_timeout_s

    def _spawn_counted(self, w: Slot) -> None:
        """Start a replacement in slot `w`; when that fails, retry later (backoff)."""
        try:
            self._spawn(w)
        except OSError as exc:  # e.g. out of processes or file descriptors
            self._start_failed(w, f"cannot start a process: {exc}")
            return
        with self._lock:
            self._counts["restarts"] += 1

    def _start_failed(self, w: Slot, why: str) -> None:
        """Slot `w` failed to start a worker: retry after a backoff; meanwhile, when no worker at
        all is running, the queued items get an error at once instead of waiting."""
        self._retire(w)
        first, longest = BACKOFF_S
        wait_s = min(longest, first * 2**w.start_failures)
        w.start_failures += 1
        w.deadline = time.monotonic() + wait_s
        self._start_error = f"{why} (retrying in {wait_s:g}s)"
        self._fail_queue_if_no_worker()

    def _fail_queue_if_no_worker(self) -> None:
        if self._live() > 0:
            return
        error = f"reward worker failed to start: {self._start_error}"
        while self._queue:
            _, chunks = self._queue.popitem()
            for chunk in chunks:
                for i in chunk.indices:
                    self._finish(chunk.job, i, RewardResult(score=0.0, error=error), "crashes")

    def _retire(self, w: Slot) -> None:
        """End slot `w`'s process, if any; the slot waits (state "waiting") for a new one."""
        if w.conn is not None:
            w.conn.close()
        if w.process is not None:
            if w.process.is_alive():
                w.process.kill()
            w.process.join(timeout=5.0)
        w.process, w.conn, w.chunk, w.state, w.deadline = None, None, None, "waiting", math.inf

    def _finish(self, job: Job, index: int, result: RewardResult, kind: str | None) -> None:
        job.results[index] = result
        job.remaining -= 1
        with self._lock:
            self._counts["items"] += 1
            if kind is not None:
                self._counts[kind] += 1
        if job.remaining == 0:
            resolve(job.future, result=job.results)

    def _jobs_in_flight(self) -> list[Job]:
        jobs = list(self._queue) + [w.chunk.job for w in self._workers if w.chunk]
        while True:
            try:
                jobs.append(self._submitted.get_nowait())
            except queue.Empty:
                return jobs

    def _recv_or_exit(self, w: Slot) -> tuple[str, object]:
        try:
            return w.conn.recv()
        except (EOFError, OSError):
            w.process.join(timeout=5.0)
            return "exit", f"worker exited (exit code {w.process.exitcode})"
