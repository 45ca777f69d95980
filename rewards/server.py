"""The reward server: grades (response, sample) pairs over HTTP for one or many trainers.

    rlsci serve-rewards --port 8711                                   # built-ins only
    rlsci serve-rewards --config configs/rewards/server.yaml reward.timeout_s=5
    RLSCI_REWARD_TOKEN=secret rlsci serve-rewards --host 0.0.0.0      # remote: a token is required

What it serves is fixed at start (a request can only name one of these, never an import path):
    the built-ins (`rewards.registry.BUILTINS`: mcq, mcq_strict, format, reference)
    "default"       the configured reward (`reward.fn`, or the weighted sum `reward.terms`)
    "<spec>"        each user function of the configured reward, under its spec string
    extra names     given to `create_app(cfg, rewards={name: spec})` / `--reward NAME=SPEC`
Built-ins are pure and fast (~20 µs/item) and are graded in the server process. Anything that
runs user code is graded by a `RewardPool` of `reward.server.workers` processes with a
per-item timeout of `reward.timeout_s`: a function that raises or hangs gives that item
`score=0` and an `error`, and never takes the server down.

Endpoints (JSON in and out; errors are {"detail": message naming the field}):
    POST /v1/grade    {"reward": "mcq", "items": [{"response": str, "sample": {Sample fields}}]}
                      -> {"results": [{score, correct, pred, extracted_by, format_ok, error}]}
                      in item order. 400 malformed JSON, 404 unknown reward (lists the names),
                      413 body > reward.server.max_body_bytes or items > reward.server.max_batch,
                      422 a missing or mistyped field (e.g. "items[3].response").
    GET  /v1/rewards  the served names
    GET  /healthz     liveness (never needs the token)
    GET  /metrics     Prometheus text: requests by endpoint and status, latency histogram,
                      items graded by reward, item errors by kind, worker restarts
Auth: with `reward.server.token` set, every endpoint but /healthz needs
`Authorization: Bearer <token>`. The server binds 127.0.0.1 by default and refuses to bind any
other address without a token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import ipaddress
import json
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from rewards.base import RewardFn, RewardResult, Sample
from rewards.config import RewardConfig
from rewards.pool import PoolStats, RewardPool, RewardSpec
from rewards.registry import BUILTINS, build_reward, is_builtin, list_rewards, load_fn, safe_grade

ENDPOINTS = ("/v1/grade", "/v1/rewards", "/healthz", "/metrics")
OPEN_PATHS = ("/healthz",)  # answered without the token (liveness probes)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestError(Exception):
    """A bad request: `status` (400, 404, 413, 422) and a message naming the field at fault."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


# ---------------------------------------------------------------------- request parsing
def parse_grade_request(body: bytes, max_batch: int) -> tuple[str, list[tuple[str, Sample]]]:
    """Parse and check a /v1/grade body -> (reward name, [(response, Sample)]).

    Raises RequestError: 400 for malformed JSON, 413 for more than `max_batch` items, 422 for
    a missing or mistyped field, named by its path (e.g. "items[3].sample.options")."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"malformed JSON body: {exc}") from None
    except RecursionError:  # "[[[[...": a few kB of nesting exhaust the parser's stack
        raise RequestError(400, "malformed JSON body: nested too deeply") from None
    if not isinstance(payload, dict):
        raise RequestError(422, f"body: expected a JSON object, got {_json_type(payload)}")
    reward = payload.get("reward", "default")
    if not isinstance(reward, str):
        raise RequestError(422, f"reward: expected a string, got {_json_type(reward)}")
    if "items" not in payload:
        raise RequestError(422, "items: missing (expected a list of {response, sample})")
    items = payload["items"]
    if not isinstance(items, list):
        raise RequestError(422, f"items: expected a list, got {_json_type(items)}")
    if len(items) > max_batch:
        raise RequestError(
            413, f"items: {len(items)} items in one request; the limit is reward.server.max_batch={max_batch}"
        )
    return reward, [_parse_item(item, i) for i, item in enumerate(items)]


def _parse_item(item: Any, i: int) -> tuple[str, Sample]:
    if not isinstance(item, dict):
        raise RequestError(
            422, f"items[{i}]: expected an object {{response, sample}}, got {_json_type(item)}"
        )
    if "response" not in item:
        raise RequestError(422, f"items[{i}].response: missing")
    response = item["response"]
    if not isinstance(response, str):
        raise RequestError(422, f"items[{i}].response: expected a string, got {_json_type(response)}")
    if "sample" not in item:
        raise RequestError(422, f"items[{i}].sample: missing")
    sample = item["sample"]
    if not isinstance(sample, dict):
        raise RequestError(422, f"items[{i}].sample: expected an object, got {_json_type(sample)}")
    for key in ("options", "meta"):
        if sample.get(key) is not None and not isinstance(sample[key], dict):
            raise RequestError(
                422, f"items[{i}].sample.{key}: expected an object, got {_json_type(sample[key])}"
            )
    try:
        return response, Sample.from_dict(sample)
    except (TypeError, ValueError) as exc:
        raise RequestError(422, f"items[{i}].sample: {exc}") from None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def encode_results(results: list[RewardResult]) -> bytes:
    rows = [
        {
            "score": float(r.score),
            "correct": None if r.correct is None else bool(r.correct),
            "pred": None if r.pred is None else str(r.pred),
            "extracted_by": None if r.extracted_by is None else str(r.extracted_by),
            "format_ok": bool(r.format_ok),
            "error": None if r.error is None else str(r.error),
        }
        for r in results
    ]
    return json.dumps({"results": rows}).encode()


# ---------------------------------------------------------------------- metrics
class Metrics:
    """Counters behind GET /metrics (Prometheus text format 0.0.4). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self._latency: dict[str, list[float]] = {}  # endpoint -> bucket counts + [sum, count]
        self._items: collections.Counter[str] = collections.Counter()
        self._inline_errors = 0  # items graded in-process whose function raised

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, status)] += 1
            row = self._latency.setdefault(endpoint, [0.0] * (len(LATENCY_BUCKETS) + 2))
            for b, upper in enumerate(LATENCY_BUCKETS):
                if seconds <= upper:
                    row[b] += 1
            row[-2] += seconds
            row[-1] += 1

    def observe_items(self, reward: str, n: int, inline_errors: int) -> None:
        with self._lock:
            self._items[reward] += n
            self._inline_errors += inline_errors

    def render(self, pool: PoolStats | None) -> str:
        p = pool or PoolStats(items=0, exceptions=0, timeouts=0, crashes=0, internal=0, restarts=0, recycles=0, alive=0)
        with self._lock:
            lines = [
                "# HELP rlsci_reward_requests_total HTTP requests by endpoint and status code.",
                "# TYPE rlsci_reward_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self._requests.items()):
                lines.append(f'rlsci_reward_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += [
                "# HELP rlsci_reward_request_seconds Request latency in seconds.",
                "# TYPE rlsci_reward_request_seconds histogram",
            ]
            for endpoint, row in sorted(self._latency.items()):
                for upper, n in zip(LATENCY_BUCKETS, row, strict=False):
                    lines.append(
                        f'rlsci_reward_request_seconds_bucket{{endpoint="{endpoint}",le="{upper:g}"}} {n:.0f}'
                    )
                lines.append(
                    f'rlsci_reward_request_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} {row[-1]:.0f}'
                )
                lines.append(f'rlsci_reward_request_seconds_sum{{endpoint="{endpoint}"}} {row[-2]:.6f}')
                lines.append(f'rlsci_reward_request_seconds_count{{endpoint="{endpoint}"}} {row[-1]:.0f}')
            lines += [
                "# HELP rlsci_reward_items_total Items graded, by reward name.",
                "# TYPE rlsci_reward_items_total counter",
            ]
            lines += [
                f'rlsci_reward_items_total{{reward="{_escape(r)}"}} {n}'
                for r, n in sorted(self._items.items())
            ]
            errors = {
                "exception": self._inline_errors + p.exceptions,
                "timeout": p.timeouts,
                "crash": p.crashes,
            }
        lines += [
            "# HELP rlsci_reward_item_errors_total Items whose reward function failed, by kind.",
            "# TYPE rlsci_reward_item_errors_total counter",
        ]
        lines += [f'rlsci_reward_item_errors_total{{kind="{k}"}} {n}' for k, n in errors.items()]
        lines += [
            "# HELP rlsci_reward_worker_restarts_total Worker processes started to replace a killed or dead one.",
            "# TYPE rlsci_reward_worker_restarts_total counter",
            f"rlsci_reward_worker_restarts_total {p.restarts}",
            "# HELP rlsci_reward_workers_alive Worker processes running now.",
            "# TYPE rlsci_reward_workers_alive gauge",
            f"rlsci_reward_workers_alive {p.alive}",
        ]
        return "\n".join(lines) + "\n"


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Gate:
    """Outermost ASGI layer: checks the bearer token and records every request's metrics."""

    def __init__(self, app, *, token: str | None, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def send_and_record(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope["path"]
        try:
            if self.expected is None or path in OPEN_PATHS or self._authorized(scope):
                await self.app(scope, receive, send_and_record)
            else:
                reply = JSONResponse(
                    {"detail": "missing or wrong bearer token (send 'Authorization: Bearer <token>')"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await reply(scope, receive, send_and_record)
        finally:
            endpoint = path if path in ENDPOINTS else "other"
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)

    def _authorized(self, scope) -> bool:
        for key, value in scope["headers"]:
            if key == b"authorization":
                return hmac.compare_digest(value, self.expected)
        return False


# ---------------------------------------------------------------------- the app
class _Grader:
    """Grades parsed requests: in-process for built-ins, through the pool for user code."""

    def __init__(self, table: dict[str, ServedReward], max_batch: int, metrics: Metrics):
        self.table = table
        self.max_batch = max_batch
        self.metrics = metrics

    def parse(self, body: bytes) -> tuple[ServedReward, list[tuple[str, Sample]]]:
        name, items = parse_grade_request(body, self.max_batch)
        entry = self.table.get(name)
        if entry is None:
            raise RequestError(404, f"unknown reward {name!r}; this server serves {sorted(self.table)}")
        return entry, items

    def grade_inline(self, entry: ServedReward, items: list[tuple[str, Sample]]) -> bytes:
        results = [safe_grade(entry.fn, response, sample) for response, sample in items]
        self.metrics.observe_items(entry.name, len(results), sum(r.error is not None for r in results))
        return encode_results(results)

    def finish_pooled(self, entry: ServedReward, results: list[RewardResult]) -> bytes:
        self.metrics.observe_items(entry.name, len(results), 0)  # the pool counts its own errors
        return encode_results(results)


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


def build_pool(cfg: RewardConfig, table: dict[str, ServedReward]) -> RewardPool | None:
    """The (unstarted) worker pool for the rewards of `table` that run user code; None if none do."""
    pooled = {name: entry.spec for name, entry in table.items() if entry.fn is None}
    if not pooled:
        return None
    return RewardPool(pooled, cfg=cfg, workers=cfg.server.workers, timeout_s=cfg.timeout_s)


def create_app(cfg: RewardConfig, rewards: dict[str, str] | None = None) -> FastAPI:
    """The FastAPI app serving `cfg`'s rewards (see the module docstring); the worker pool for
    user functions starts with the app (lifespan) and raises there if a function cannot load."""
    table = served_rewards(cfg, rewards)
    return _make_app(cfg, table, build_pool(cfg, table))


def _make_app(cfg: RewardConfig, table: dict[str, ServedReward], pool: RewardPool | None) -> FastAPI:
    metrics = Metrics()
    grader = _Grader(table, cfg.server.max_batch, metrics)
    docs = {row["name"]: row["doc"] for row in list_rewards()}

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
    app.add_middleware(_Gate, token=cfg.server.token, metrics=metrics)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.post("/v1/grade")
    async def grade(request: Request) -> Response:
        # CPU work runs in worker threads so that the event loop keeps reading other requests;
        # a pooled reward is awaited without holding a thread (it may wait out its timeouts).
        body = await _read_body(request, cfg.server.max_body_bytes)
        entry, items = await run_in_threadpool(grader.parse, body)
        if entry.fn is not None:
            payload = await run_in_threadpool(grader.grade_inline, entry, items)
        else:
            results = await asyncio.wrap_future(pool.submit(entry.name, items))
            payload = await run_in_threadpool(grader.finish_pooled, entry, results)
        return Response(payload, media_type="application/json")

    @app.get("/v1/rewards")
    async def rewards_list() -> dict:
        rows = [entry.describe() | {"doc": docs.get(name, "")} for name, entry in table.items()]
        return {"rewards": rows}

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        stats = pool.stats() if pool is not None else None
        broken = stats is not None and stats.alive == 0
        body = {"status": "broken" if broken else "ok", "rewards": len(table)}
        if stats is not None:
            body |= {"workers_alive": stats.alive, "workers": cfg.server.workers}
        return JSONResponse(body, status_code=503 if broken else 200)

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
    """Raise ValueError when the server must not start: invalid config, or a non-loopback
    bind address without a token (anyone on the network could use the server)."""
    errors = cfg.validate()
    if errors:
        raise ValueError("invalid reward config: " + "; ".join(errors))
    if not is_loopback(cfg.server.host) and not cfg.server.token:
        raise ValueError(
            f"refusing to bind {cfg.server.host!r} without a token: set reward.server.token, "
            "--token or RLSCI_REWARD_TOKEN, or bind 127.0.0.1"
        )


def serve(cfg: RewardConfig, rewards: dict[str, str] | None = None) -> None:
    """Run the server in the foreground until interrupted (uvicorn, one process)."""
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
        uvicorn.run(app, host=cfg.server.host, port=cfg.server.port, log_level="info", access_log=False)
    finally:
        if pool is not None:
            pool.close()
