"""The reward server: grades (response, sample) pairs over HTTP for one or many trainers.

    rlsci serve-rewards --port 8711                                   # built-ins only
    rlsci serve-rewards configs/rewards/server.yaml reward.timeout_s=5
    RLSCI_REWARD_TOKEN=secret rlsci serve-rewards --host 0.0.0.0      # remote: a token is required

What it serves is fixed at start (a request can only name one of these, never an import path):
    the built-ins (`rewards.registry.BUILTINS`: mcq, mcq_strict, format, reference)
    "default"       the configured reward (`reward.fn`, or the weighted sum `reward.terms`)
    "<spec>"        each user function of the configured reward, under its spec string
    extra names     given to `create_app(cfg, rewards={name: spec})` / `--reward NAME=SPEC`
Built-ins are pure and fast (~20 µs/item) and are graded in the server process, in worker
threads, on the last `reward.server.max_graded_chars` characters of each response (the rules
only need the end). Anything that runs user code is graded by a `RewardPool` of
`reward.server.workers` processes with a per-item timeout of `reward.timeout_s`: a function that
raises, hangs, crashes or returns odd objects gives that item `score=0` and an `error`, and never
takes the server down. A client that hangs up cancels its items still queued.

Limits: at most `reward.server.max_concurrent_requests` /v1/grade requests are read and graded at
once (the others wait, their bodies unread); a connection whose request headers take longer than
`reward.server.header_timeout_s` is closed; on SIGTERM, requests still running after
`reward.server.shutdown_timeout_s` are cancelled.

Endpoints (JSON in and out; errors are {"detail": message naming the field}):
    POST /v1/grade    {"reward": "mcq", "items": [{"response": str, "sample": {Sample fields}}]}
                      -> {"results": [{score, correct, pred, extracted_by, format_ok, error}]}
                      in item order. 400 malformed JSON, 404 unknown reward (lists the names),
                      413 body > reward.server.max_body_bytes or items > reward.server.max_batch,
                      415 a Content-Type other than application/json, 422 a missing or mistyped
                      field (e.g. "items[3].response", "items[0].sample.answer"), 503 no reward
                      worker running (retry later).
    POST /openrlhf/v1/reward[/NAME]
                      OpenRLHF's remote reward protocol (rewards.openrlhf_compat) for the reward
                      NAME ("default" when not given): {"query", "prompts", "labels"} ->
                      {"rewards", "scores", "extra_logs", "info"}; same limits and errors
    GET  /v1/rewards  the served names
    GET|HEAD /healthz the pool's state: status ok | degraded | broken (503), workers, workers_alive,
                      detail (never needs the token)
    GET  /metrics     Prometheus text: requests by endpoint and status (499: the client hung up),
                      latency histogram, items graded by reward, item errors by kind (exception,
                      timeout, crash, internal), worker restarts and recycles
Auth: with `reward.server.token` set, every endpoint but /healthz needs
`Authorization: Bearer <token>` (the OpenRLHF route also takes the token as the password of
`Authorization: Basic`, which OpenRLHF sends for a url "http://rlsci:TOKEN@host:port/..."). The server binds 127.0.0.1 by default and refuses to bind any
other address without a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from rewards.base import RewardFn, RewardResult, Sample
from rewards.columns import NEEDS_OPTIONS
from rewards.config import RewardConfig
from rewards.openrlhf_compat import encode_openrlhf, parse_openrlhf_request
from rewards.pool import RewardPool, RewardSpec
from rewards.registry import BUILTINS, build_reward, is_builtin, list_rewards, load_fn, safe_grade
from rewards.server_http import CLIENT_GONE, OPENRLHF_PATH, Gate, Metrics, header_timeout_protocol
from rewards.server_request import (
    RequestError,
    check_content_type,
    encode_results,
    graded_tail,
    parse_grade_request,
)


@dataclass(frozen=True)
class ServedReward:
    name: str
    kind: str  # "builtin" | "configured" (the "default" reward) | "user"
    spec: RewardSpec
    fn: RewardFn | None  # graded in the server process; None -> graded by the worker pool

    def describe(self) -> dict[str, Any]:
        spec = self.spec if isinstance(self.spec, str) else _describe_config(self.spec)
        return {"name": self.name, "kind": self.kind, "spec": spec, "isolated": self.fn is None}


def _describe_config(cfg: RewardConfig) -> str:
    return " + ".join(f"{t.weight:g}*{t.fn}" for t in cfg.resolved_terms())


def served_rewards(cfg: RewardConfig, rewards: Mapping[str, str] | None = None) -> dict[str, ServedReward]:
    """The table of what a server started with `cfg` (and extra `rewards` {name: spec}) serves."""
    table = {name: ServedReward(name, "builtin", name, load_fn(name, cfg)) for name in BUILTINS}
    terms = cfg.resolved_terms()
    all_builtin = all(is_builtin(t.fn) for t in terms)
    table["default"] = ServedReward("default", "configured", cfg, build_reward(cfg) if all_builtin else None)
    for term in terms:
        if not is_builtin(term.fn):
            table[term.fn] = ServedReward(term.fn, "user", term.fn, None)
    for name, spec in (rewards or {}).items():
        if name in table:
            raise ValueError(
                f"reward name {name!r} is already served ({table[name].kind}); pick another name"
            )
        fn = load_fn(spec, cfg) if is_builtin(spec) else None
        table[name] = ServedReward(name, "builtin" if fn else "user", spec, fn)
    return table


# ---------------------------------------------------------------------- the app
class _Grader:
    """Grades parsed requests: in-process for built-ins, through the pool for user code."""

    def __init__(self, table: dict[str, ServedReward], cfg: RewardConfig, metrics: Metrics):
        self.table = table
        self.max_batch = cfg.server.max_batch
        self.max_chars = cfg.server.max_graded_chars
        self.metrics = metrics

    def entry(self, name: str) -> ServedReward:
        entry = self.table.get(name)
        if entry is None:
            raise RequestError(404, f"unknown reward {name!r}; this server serves {sorted(self.table)}")
        return entry

    def parse(self, body: bytes) -> tuple[ServedReward, list[tuple[str, Sample]]]:
        name, items = parse_grade_request(body, self.max_batch)
        return self.entry(name), items

    def parse_openrlhf(self, name: str, body: bytes) -> tuple[ServedReward, list[tuple[str, Sample]]]:
        entry = self.entry(name)
        return entry, parse_openrlhf_request(body, self.max_batch, needs_options=_needs_options(entry))

    def grade_inline(self, entry: ServedReward, items: list[tuple[str, Sample]]) -> list[RewardResult]:
        # Only the tail is graded: one regex over a 10 MB response would hold the GIL, and so
        # every other request, for seconds.
        results = [safe_grade(entry.fn, graded_tail(r, self.max_chars), sample) for r, sample in items]
        self.metrics.observe_items(entry.name, len(results), sum(r.error is not None for r in results))
        return results


def _needs_options(entry: ServedReward) -> bool:
    """Whether the reward grades a letter among options (OpenRLHF labels may leave them to the prompt)."""
    spec = entry.spec if isinstance(entry.spec, str) else entry.spec.resolved_terms()[0].fn
    return spec in NEEDS_OPTIONS


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"body: {declared} bytes; the limit is reward.server.max_body_bytes={limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(
                413, f"body: more than {limit} bytes; the limit is reward.server.max_body_bytes={limit}"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _until_disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body has been read: the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _grade_pooled(request: Request, pool: RewardPool, entry: ServedReward, items) -> list | None:
    """The pool's results, or None when the client hung up first (its queued items are dropped)."""
    health = pool.health()
    if health["status"] == "broken":  # 503: clients retry, rather than take zero rewards
        raise RequestError(503, f"reward workers unavailable: {health['detail']}")
    future = await run_in_threadpool(pool.submit, entry.name, items)  # pickles every item
    graded = asyncio.wrap_future(future)  # cancelled with this task (shutdown): cancels `future`
    gone = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({graded, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not graded.done():
            future.cancel()
            graded.cancel()
    return graded.result() if not graded.cancelled() else None


def build_pool(cfg: RewardConfig, table: dict[str, ServedReward]) -> RewardPool | None:
    """The (unstarted) worker pool for the rewards of `table` that run user code; None if none do."""
    pooled = {name: entry.spec for name, entry in table.items() if entry.fn is None}
    if not pooled:
        return None
    return RewardPool(
        pooled,
        cfg=cfg,
        workers=cfg.server.workers,
        timeout_s=cfg.timeout_s,
        max_items_per_worker=cfg.server.worker_max_items,
        max_worker_rss_mb=cfg.server.worker_max_rss_mb,
    )


def create_app(cfg: RewardConfig, rewards: dict[str, str] | None = None) -> FastAPI:
    """The FastAPI app serving `cfg`'s rewards (see the module docstring); the worker pool for
    user functions starts with the app (lifespan) and raises there if a function cannot load."""
    table = served_rewards(cfg, rewards)
    return _make_app(cfg, table, build_pool(cfg, table))


def _make_app(cfg: RewardConfig, table: dict[str, ServedReward], pool: RewardPool | None) -> FastAPI:
    metrics = Metrics()
    grader = _Grader(table, cfg, metrics)
    docs = {row["name"]: row["doc"] for row in list_rewards()}
    # Requests past this many wait with their bodies unread (uvicorn stops reading a socket
    # whose request is not consumed), so memory stays bounded by max_body_bytes x this.
    in_flight = asyncio.Semaphore(cfg.server.max_concurrent_requests)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if pool is not None:
            await run_in_threadpool(pool.start)  # a no-op when serve() started it already
        try:
            yield
        finally:
            if pool is not None:
                await run_in_threadpool(pool.close)

    app = FastAPI(title="rlsci reward server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(Gate, token=cfg.server.token, metrics=metrics)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    async def answer(request: Request, parse, encode) -> Response:
        """Read, parse (`parse(body) -> (entry, items)`), grade and encode one request.
        CPU work runs in worker threads so that the event loop keeps reading other requests;
        a pooled reward is awaited without holding a thread (it may wait out its timeouts)."""
        check_content_type(request.headers.get("content-type"))
        async with in_flight:
            body = await _read_body(request, cfg.server.max_body_bytes)
            entry, items = await run_in_threadpool(parse, body)
            del body
            if entry.fn is not None:
                results = await run_in_threadpool(grader.grade_inline, entry, items)
            else:
                results = await _grade_pooled(request, pool, entry, items)
                if results is None:
                    request.scope["rlsci.status"] = CLIENT_GONE  # for /metrics; nobody reads it
                    return Response(status_code=CLIENT_GONE)
                metrics.observe_items(entry.name, len(results), 0)  # the pool counts its own errors
            payload = await run_in_threadpool(encode, results)
        return Response(payload, media_type="application/json")

    @app.post("/v1/grade")
    async def grade(request: Request) -> Response:
        return await answer(request, grader.parse, encode_results)

    @app.post(OPENRLHF_PATH)
    @app.post(OPENRLHF_PATH + "/{name}")
    async def openrlhf_reward(request: Request, name: str = "default") -> Response:
        # OpenRLHF's remote reward protocol (rewards.openrlhf_compat); the reward is named in the path
        return await answer(request, lambda body: grader.parse_openrlhf(name, body), encode_openrlhf)

    @app.get("/v1/rewards")
    async def rewards_list() -> dict:
        rows = [entry.describe() | {"doc": docs.get(name, "")} for name, entry in table.items()]
        return {"rewards": rows}

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "rewards": len(table)}
        if pool is not None:
            body |= pool.health()  # status: ok | degraded | broken, workers, workers_alive, detail
        return JSONResponse(body, status_code=503 if body["status"] == "broken" else 200)

    @app.get("/metrics")
    async def metrics_text() -> Response:
        stats = pool.stats() if pool is not None else None
        return Response(metrics.render(stats), media_type="text/plain; version=0.0.4")

    return app


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback IPs (127.0.0.0/8, ::1); a host name is not trusted."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_config(cfg: RewardConfig) -> None:
    """Raise ValueError when the server must not start: invalid config (ranges included: a port
    outside 1..65535 would bind another one), or a non-loopback bind address without a token."""
    errors = cfg.validate()
    if errors:
        raise ValueError("invalid reward config: " + "; ".join(errors))
    if not is_loopback(cfg.server.host) and not cfg.server.token:
        raise ValueError(
            f"refusing to bind {cfg.server.host!r} without a token: set reward.server.token, "
            "--token, --token-file or RLSCI_REWARD_TOKEN, or bind 127.0.0.1"
        )


def serve(cfg: RewardConfig, rewards: dict[str, str] | None = None) -> None:
    """Run the server in the foreground until interrupted (uvicorn, one process). On SIGTERM,
    requests still running after reward.server.shutdown_timeout_s are cancelled."""
    import uvicorn

    check_server_config(cfg)
    table = served_rewards(cfg, rewards)
    pool = build_pool(cfg, table)
    if pool is not None:
        pool.start()  # before uvicorn: a function that cannot load is one clear PoolStartError
    try:
        app = _make_app(cfg, table, pool)
        where = f"http://{cfg.server.host}:{cfg.server.port}"
        print(f"rlsci reward server on {where} serving: {', '.join(table)}", file=sys.stderr, flush=True)
        uvicorn.run(
            app,
            host=cfg.server.host,
            port=cfg.server.port,
            log_level="info",
            access_log=False,
            http=header_timeout_protocol(cfg.server.header_timeout_s),
            timeout_graceful_shutdown=cfg.server.shutdown_timeout_s,
        )
    finally:
        if pool is not None:
            pool.close()
