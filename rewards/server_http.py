"""The reward server's HTTP plumbing: metrics, the auth-and-metrics gate (outermost ASGI layer),
and a uvicorn protocol that closes connections whose request headers never finish arriving.

    Metrics().render(pool_stats) -> Prometheus text (format 0.0.4)
    Gate(app, token=..., metrics=...)            "Authorization: Bearer <token>" (scheme in any case)
    header_timeout_protocol(timeout_s)           -> the `http=` protocol class for uvicorn
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hmac
import threading
import time

from fastapi.responses import JSONResponse

from rewards.pool import PoolStats

OPENRLHF_PATH = "/openrlhf/v1/reward"  # OpenRLHF's remote reward protocol, optionally + "/NAME"
ENDPOINTS = ("/v1/grade", OPENRLHF_PATH, "/v1/rewards", "/healthz", "/metrics")
OPEN_PATHS = ("/healthz",)  # answered without the token (liveness probes)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CLIENT_GONE = 499  # recorded (never sent) for a request whose client hung up before its answer
NO_POOL = PoolStats(items=0, exceptions=0, timeouts=0, crashes=0, internal=0, restarts=0, recycles=0, alive=0)


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
        p = pool or NO_POOL
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
                "internal": p.internal,
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
            "# HELP rlsci_reward_worker_recycles_total Workers retired after their item or memory limit.",
            "# TYPE rlsci_reward_worker_recycles_total counter",
            f"rlsci_reward_worker_recycles_total {p.recycles}",
            "# HELP rlsci_reward_workers_alive Worker processes running now.",
            "# TYPE rlsci_reward_workers_alive gauge",
            f"rlsci_reward_workers_alive {p.alive}",
        ]
        return "\n".join(lines) + "\n"


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Gate:
    """Outermost ASGI layer: checks the bearer token and records every request's metrics.
    The scheme is matched in any case ("bearer", "BEARER": RFC 7235), the token exactly."""

    def __init__(self, app, *, token: str | None, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.token = token.encode() if token else None

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
        openrlhf = path == OPENRLHF_PATH or path.startswith(OPENRLHF_PATH + "/")
        try:
            if self.token is None or path in OPEN_PATHS or self._authorized(scope, basic=openrlhf):
                await self.app(scope, receive, send_and_record)
            else:
                reply = JSONResponse(
                    {"detail": "missing or wrong bearer token (send 'Authorization: Bearer <token>')"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await reply(scope, receive, send_and_record)
        finally:
            endpoint = OPENRLHF_PATH if openrlhf else path if path in ENDPOINTS else "other"
            self.metrics.observe_request(
                endpoint, scope.get("rlsci.status", status), time.perf_counter() - start
            )

    def _authorized(self, scope, basic: bool) -> bool:
        """Bearer <token>; with `basic`, also Basic base64(<any user>:<token>) (a url's userinfo)."""
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                if basic and scheme.lower() == b"basic":
                    try:
                        token = base64.b64decode(token.strip(), validate=True).partition(b":")[2]
                    except ValueError:
                        return False
                    return hmac.compare_digest(token, self.token)
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.token)
        return False


def header_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection whose request line and headers are not
    complete `timeout_s` after its first byte (or after it opened): uvicorn itself waits forever
    for them, so slow clients could hold any number of connections."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeaderTimeoutProtocol(AutoHTTPProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer: asyncio.TimerHandle | None = None
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first bytes of the next request on a kept-alive connection
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._armed_cycle:
                self._disarm()  # its headers are complete: uvicorn has started a new cycle

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._armed_cycle = self.cycle
            self._header_timer = self.loop.call_later(timeout_s, self._on_header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _on_header_timeout(self) -> None:
            self._header_timer = None
            if self.cycle is self._armed_cycle and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
