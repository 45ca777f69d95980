"""Client of the reward server (`rewards.server`): async, with a blocking twin.

    from rewards.client import RewardClient
    client = RewardClient("http://127.0.0.1:8711", token=None)
    results = client.grade("mcq", [(response, sample), ...])   # list[RewardResult], item order
    client.close()

    async with AsyncRewardClient(url) as client:                 # inside an event loop
        results = await client.grade("default", items)

Large calls are split into chunks of `max_batch` items sent concurrently (at most
`concurrency` at a time) over one kept-alive connection pool. A chunk that fails with a
connection error, a timeout or a 5xx is retried `retries` times, waiting
backoff_s * 2**attempt between attempts (0.5 s, 1 s, 2 s with the defaults); after the last
attempt `RewardServerError` says what failed. A 4xx (bad request, unknown reward, bad token)
is not retried: it raises at once with the server's message. A failed call never turns into
zero rewards, and an answer whose results are malformed (a NaN or text score, a missing field)
raises RewardServerError at once. A url without http:// or https:// is refused by the constructor.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

import httpx

from rewards.base import RESULT_FIELDS, SAMPLE_FIELDS, RewardResult, Sample


class RewardServerError(RuntimeError):
    """The reward server could not grade a request (after retries, or a 4xx answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # HTTP status of the last answer; None when none came back


def _item_json(response: str, sample: Sample) -> dict[str, Any]:
    return {"response": response, "sample": {name: getattr(sample, name) for name in SAMPLE_FIELDS}}


_RESULT_TYPES = {  # field -> (accepted types, as the error message says them)
    "correct": ((bool, type(None)), "a bool or null"),
    "pred": ((str, type(None)), "a string or null"),
    "extracted_by": ((str, type(None)), "a string or null"),
    "format_ok": ((bool,), "a bool"),
    "error": ((str, type(None)), "a string or null"),
}


def _result(row: Any) -> RewardResult:
    """One answered result, checked field by field: a NaN or text score from a broken or
    foreign server is a protocol error, never a reward (ValueError naming the field)."""
    if not isinstance(row, dict):
        raise ValueError(f"a result must be an object, got {type(row).__name__}")
    missing = [name for name in RESULT_FIELDS if name not in row]
    if missing:
        raise ValueError(f"a result lacks {', '.join(missing)}")
    score = row["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise ValueError(f"score must be a finite number, got {score!r}")
    for name, (kinds, expected) in _RESULT_TYPES.items():
        if not isinstance(row[name], kinds):
            raise ValueError(f"{name} must be {expected}, got {row[name]!r}")
    return RewardResult(**{name: row[name] for name in RESULT_FIELDS} | {"score": float(score)})


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


class AsyncRewardClient:
    """Grades through a reward server at `url` (e.g. "http://127.0.0.1:8711").

    token:       bearer token (the server's reward.server.token), or None
    timeout_s:   limit for one HTTP request (connect, send, wait, read), in seconds
    max_batch:   items per request; keep it <= the server's reward.server.max_batch
    concurrency: most requests in flight at once for one `grade` call
    retries:     extra attempts after a connection error, timeout or 5xx
    backoff_s:   wait before retry k (k = 0, 1, ...) is backoff_s * 2**k
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 120.0,
        max_batch: int = 256,
        concurrency: int = 8,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        if max_batch < 1 or concurrency < 1 or retries < 0:
            raise ValueError(
                f"AsyncRewardClient: need max_batch >= 1, concurrency >= 1, retries >= 0; "
                f"got {max_batch}, {concurrency}, {retries}"
            )
        if not url.startswith(("http://", "https://")):  # else every attempt fails the same way
            raise ValueError(f"AsyncRewardClient: the url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.max_batch = max_batch
        self.concurrency = concurrency
        self.retries = retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def grade(self, reward: str, items: Sequence[tuple[str, Sample]]) -> list[RewardResult]:
        """Grade [(response, sample)] with the server's reward `reward`; results in item order."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(lo: int) -> list[RewardResult]:
            async with gate:
                return await self._grade_chunk(reward, items[lo : lo + self.max_batch], lo)

        tasks = [asyncio.ensure_future(one(lo)) for lo in range(0, len(items), self.max_batch)]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            # gather does not cancel the other chunks when one fails: without this they would
            # keep retrying (and loading the server) after the caller already has its error
            for task in tasks:
                task.cancel()
            raise
        return [result for part in parts for result in part]

    async def _grade_chunk(
        self, reward: str, chunk: Sequence[tuple[str, Sample]], first: int
    ) -> list[RewardResult]:
        """Grade items[first : first + len(chunk)] in one request (with retries)."""
        payload = {"reward": reward, "items": [_item_json(r, s) for r, s in chunk]}
        response = await self._request("POST", "/v1/grade", json=payload)
        try:
            rows = response.json()["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RewardServerError(
                f"{self.url}/v1/grade answered something that is not a list of results: {exc!r}",
                response.status_code,
            ) from exc
        if not isinstance(rows, list):
            raise RewardServerError(
                f"{self.url}/v1/grade answered something that is not a list of results: {type(rows).__name__}",
                response.status_code,
            )
        results = []
        for i, row in enumerate(rows):
            try:
                results.append(_result(row))
            except ValueError as exc:
                raise RewardServerError(
                    f"{self.url}/v1/grade answered an invalid result for item {first + i}: {exc}",
                    response.status_code,
                ) from None
        if len(results) != len(chunk):
            raise RewardServerError(
                f"{self.url}/v1/grade answered {len(results)} results for {len(chunk)} items",
                response.status_code,
            )
        return results

    async def list_rewards(self) -> list[dict[str, Any]]:
        """The rewards this server serves: [{name, kind, spec, isolated, doc}]."""
        return (await self._request("GET", "/v1/rewards")).json()["rewards"]

    async def health(self) -> dict[str, Any]:
        """GET /healthz (raises RewardServerError when the server is down or broken)."""
        return (await self._request("GET", "/healthz")).json()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with retries on connection errors, timeouts and 5xx; raises on 4xx."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:  # connect/read/write errors and timeouts
                failure, status = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code < 400:
                    return response
                failure, status = f"HTTP {response.status_code}: {_detail(response)}", response.status_code
                if response.status_code < 500:
                    raise RewardServerError(f"{method} {self.url}{path} -> {failure}", status)
            if attempt + 1 < attempts:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        raise RewardServerError(
            f"{method} {self.url}{path} failed after {attempts} attempts; last error: {failure}", status
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class RewardClient:
    """Blocking twin of AsyncRewardClient (same arguments and methods).

    It runs its own event loop in a daemon thread, so it works from plain scripts, from
    threads, and from inside code that already runs an event loop (Ray async actors,
    notebooks), and it keeps its connections between calls. Call `close()` when done."""

    def __init__(self, url: str, token: str | None = None, **kwargs: Any) -> None:
        self._async = AsyncRewardClient(url, token, **kwargs)  # used only on the thread's loop
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reward-client", daemon=True)
        self._thread.start()

    def _run(self, coro: Coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def url(self) -> str:
        return self._async.url

    def grade(self, reward: str, items: Sequence[tuple[str, Sample]]) -> list[RewardResult]:
        return self._run(self._async.grade(reward, items))

    def list_rewards(self) -> list[dict[str, Any]]:
        return self._run(self._async.list_rewards())

    def health(self) -> dict[str, Any]:
        return self._run(self._async.health())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
