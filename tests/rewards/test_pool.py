"""RewardPool: user functions run in worker processes; raise / hang / crash become error results,
the pool replaces killed workers and keeps grading, and results keep item order."""

from __future__ import annotations

import textwrap
import threading
import time

import pytest

from rewards.base import RewardResult, Sample
from rewards.config import RewardConfig
from rewards.pool import PoolStartError, RewardPool

USER_FUNCTIONS = textwrap.dedent(
    """
    import os
    import time

    def as_number(response, sample):
        return float(response)

    def raises_on_bad(response, sample):
        if response == "bad":
            raise ValueError("bad response")
        return float(response)

    def hangs_on_hang(response, sample):
        if response == "hang":
            time.sleep(60)
        return float(response)

    def exits_on_crash(response, sample):
        if response == "crash":
            os._exit(7)
        return float(response)

    class Opaque:  # defined in the plug-in file: the parent process cannot unpickle it
        def __repr__(self):
            return "<Opaque 7>"

    def returns_objects(response, sample):
        from rewards.base import RewardResult

        info = {"obj": Opaque(), "nested": {"n": [1, 2.5, Opaque()]}, "nan": float("nan")}
        return RewardResult(score=1.0, pred=Opaque(), info=info)
    """
)

BLOCKING = textwrap.dedent(
    """
    import pathlib, time

    def blocks(response, sample):
        # response: a path prefix; says "<prefix>.started", then waits (30 s at most) for "<prefix>.release"
        started, release = pathlib.Path(response + ".started"), pathlib.Path(response + ".release")
        started.touch()
        for _ in range(600):
            if release.exists():
                return 1.0
            time.sleep(0.05)
        return -1.0
    """
)

SAMPLE = Sample(id="q", question="?", options={"A": "x", "B": "y"}, answer="B")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    path = tmp_path_factory.mktemp("user_rewards") / "user_rewards.py"
    path.write_text(USER_FUNCTIONS)
    specs = {
        name: f"{path}:{name}"
        for name in ("as_number", "raises_on_bad", "hangs_on_hang", "exits_on_crash", "returns_objects")
    }
    specs["configured_mcq"] = RewardConfig(fn="mcq")
    with RewardPool(specs, workers=2, timeout_s=1.0, chunk_size=4) as p:
        yield p


def items(*responses: str) -> list[tuple[str, Sample]]:
    return [(r, SAMPLE) for r in responses]


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"k": value}
    return value


def wait_for(path, limit_s: float = 30.0) -> None:
    """Wait (with a generous margin) until `path` exists."""
    deadline = time.monotonic() + limit_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path} never appeared"


def test_results_come_back_in_item_order(pool):
    # 50 items in chunks of 4 over 2 workers: score i for response str(i), whatever finishes first
    results = pool.grade("as_number", items(*(str(i) for i in range(50))))
    assert [r.score for r in results] == [float(i) for i in range(50)]
    assert all(isinstance(r, RewardResult) and r.error is None for r in results)


def test_raising_item_gets_error_and_neighbours_are_graded(pool):
    before = pool.stats()
    results = pool.grade("raises_on_bad", items("1", "bad", "3", "bad"))
    assert [r.score for r in results] == [1.0, 0.0, 3.0, 0.0]
    assert results[0].error is None and results[2].error is None
    assert "ValueError" in results[1].error and "bad response" in results[1].error
    after = pool.stats()
    assert after.exceptions - before.exceptions == 2
    assert after.items - before.items == 4
    assert after.restarts == before.restarts  # an exception does not cost a worker


def test_hanging_item_times_out_worker_is_replaced_and_rest_is_graded(pool):
    before = pool.stats()
    results = pool.grade("hangs_on_hang", items("1", "hang", "3", "4", "5", "6"))
    assert [r.score for r in results] == [1.0, 0.0, 3.0, 4.0, 5.0, 6.0]
    # had the 60 s sleep run out, float("hang") would have raised: this error is the timeout's
    assert results[1].error == "timeout after 1s"
    assert all(r.error is None for i, r in enumerate(results) if i != 1)
    after = pool.stats()
    assert (after.timeouts - before.timeouts, after.restarts - before.restarts) == (1, 1)
    # the replacement comes up and grades again
    assert [r.score for r in pool.grade("as_number", items("7", "8", "9"))] == [7.0, 8.0, 9.0]
    deadline = time.monotonic() + 30
    while pool.stats().alive < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.stats().alive == 2


def test_crashing_item_gets_error_and_worker_is_replaced(pool):
    before = pool.stats()
    results = pool.grade("exits_on_crash", items("1", "crash", "3", "4"))
    assert [r.score for r in results] == [1.0, 0.0, 3.0, 4.0]
    assert results[1].error == "worker crashed (exit code 7)"
    after = pool.stats()
    assert (after.crashes - before.crashes, after.restarts - before.restarts) == (1, 1)
    assert pool.grade("exits_on_crash", items("5"))[0].score == 5.0


def test_concurrent_callers_each_get_their_own_results_in_order(pool):
    outputs: dict[int, list[float]] = {}

    def call(k: int) -> None:
        outputs[k] = [r.score for r in pool.grade("as_number", items(*(str(100 * k + i) for i in range(20))))]

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outputs == {k: [float(100 * k + i) for i in range(20)] for k in range(4)}


def test_reward_config_spec_builds_the_configured_reward_in_the_worker(pool):
    # mcq on gold B: "Answer: B" is right (score = correct = 1.0), "Answer: A" wrong (0.0)
    right, wrong = pool.grade("configured_mcq", items("Answer: B", "Answer: A"))
    assert (right.score, right.correct, right.pred) == (1.0, True, "B")
    assert (wrong.score, wrong.correct, wrong.pred) == (0.0, False, "A")


def test_cancelled_call_leaves_the_pool_grading(pool):
    # the caller gives up (an HTTP client hanging up cancels its future) while "hang" runs: the
    # rest of that job is dropped or finishes unseen, and the next caller is served as usual
    future = pool.submit("hangs_on_hang", items("hang", *(str(i) for i in range(20))))
    assert future.cancel()  # nothing resolves a job before its 1 s timeout at the earliest
    assert [r.score for r in pool.grade("as_number", items("1", "2", "3"))] == [1.0, 2.0, 3.0]
    assert [r.score for r in pool.grade("hangs_on_hang", items("4", "5"))] == [4.0, 5.0]


def test_empty_call_and_unknown_name(pool):
    assert pool.grade("as_number", []) == []
    with pytest.raises(KeyError, match="unknown reward 'nope'"):
        pool.grade("nope", items("1"))


def test_function_that_cannot_load_fails_start_with_its_name(tmp_path):
    spec = f"{tmp_path / 'missing.py'}:score"
    pool = RewardPool({"broken": spec}, workers=1, timeout_s=1.0)
    with pytest.raises(PoolStartError, match="'broken'.*file not found"):
        pool.start()
    with pytest.raises(RuntimeError, match="not running"):
        pool.submit("broken", items("1"))


def test_grade_before_start_is_an_error(tmp_path):
    pool = RewardPool({"mcq": "mcq"}, workers=1, timeout_s=1.0)
    with pytest.raises(RuntimeError, match="not running"):
        pool.grade("mcq", items("Answer: B"))
    pool.close()


def test_replacement_that_cannot_start_fails_items_instead_of_hanging(tmp_path):
    # the module loads once (it leaves a marker), then refuses: the worker replaced after the
    # crash cannot start, so the pool has no worker left and answers with errors at once
    marker = tmp_path / "loaded"
    path = tmp_path / "load_once.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import os, pathlib
            marker = pathlib.Path({str(marker)!r})
            if marker.exists():
                raise RuntimeError("second load refused")
            marker.touch()

            def score(response, sample):
                if response == "crash":
                    os._exit(1)
                return float(response)
            """
        )
    )
    with RewardPool({"once": f"{path}:score"}, workers=1, timeout_s=1.0) as pool:
        results = pool.grade("once", items("1", "crash", "3"))
        assert results[0].score == 1.0
        assert results[1].error == "worker crashed (exit code 1)"
        assert results[2].score == 0.0 and "second load refused" in results[2].error
        later = pool.grade("once", items("4"))  # answered while the slot waits to retry (or fails again)
        assert (
            later[0].error.startswith("reward worker failed to start")
            and "second load refused" in later[0].error
        )
        assert pool.health()["status"] != "ok"  # no worker ready: broken, or degraded while one starts


def test_replacement_that_hangs_while_starting_fails_items_instead_of_hanging(tmp_path):
    # the module loads once, then its import hangs (60 s): the replacement started after the
    # crash never becomes ready, is given up after start_timeout_s, and the pool, left with no
    # worker, answers the rest with errors instead of waiting for it
    marker = tmp_path / "loaded"
    path = tmp_path / "hang_on_reload.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import os, pathlib, time
            marker = pathlib.Path({str(marker)!r})
            if marker.exists():
                time.sleep(60)
            marker.touch()

            def score(response, sample):
                if response == "crash":
                    os._exit(1)
                return float(response)
            """
        )
    )
    with RewardPool({"once": f"{path}:score"}, workers=1, timeout_s=1.0, start_timeout_s=8.0) as pool:
        results = pool.grade("once", items("1", "crash", "3"))
        assert results[0].score == 1.0
        assert results[1].error == "worker crashed (exit code 1)"
        assert results[2].score == 0.0
        assert results[2].error.startswith("reward worker failed to start: worker did not start within 8s")


# ---------------------------------------------------------------------- the dispatcher never dies
def test_a_sample_that_does_not_pickle_costs_only_its_item(pool):
    # pickling 5000 nested dicts raises RecursionError; it must not stop the pool
    before = pool.stats()
    deep = Sample(answer="B", meta=nested(5000))
    results = pool.submit("as_number", [("1", SAMPLE), ("2", deep), ("3", SAMPLE)]).result(timeout=60)
    assert [r.score for r in results] == [1.0, 0.0, 3.0]
    assert results[1].error.startswith("item 1 cannot be sent to a worker: RecursionError")
    after = pool.stats()
    assert (after.items - before.items, after.internal - before.internal) == (3, 1)
    assert pool.submit("as_number", items("4")).result(timeout=60)[0].score == 4.0
    assert pool.health()["status"] == "ok"


def test_a_result_holding_plugin_objects_comes_back_as_plain_data(pool):
    # the parent cannot unpickle an instance of a class of the plug-in file: the worker sends reprs
    results = pool.submit("returns_objects", items("x", "y")).result(timeout=60)
    assert [(r.score, r.pred, r.error) for r in results] == [(1.0, "<Opaque 7>", None)] * 2
    assert results[0].info == {"obj": "<Opaque 7>", "nested": {"n": [1, 2.5, "<Opaque 7>"]}, "nan": "nan"}
    assert pool.submit("as_number", items("5")).result(timeout=60)[0].score == 5.0
    assert pool.health()["status"] == "ok"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_timeout_must_be_a_finite_positive_number(bad):
    # a NaN timeout made every deadline NaN: items never timed out and the dispatcher spun
    with pytest.raises(ValueError, match="timeout_s must be a finite number > 0"):
        RewardPool({"mcq": "mcq"}, timeout_s=bad)


# ---------------------------------------------------------------------- replacements and plug-in files
def test_replacement_start_is_retried_until_the_cause_is_gone(tmp_path):
    # while "broken" exists the module refuses to load: the replacement started after the crash
    # fails, is retried with backoff, and grades again once the file is gone
    broken = tmp_path / "broken"
    path = tmp_path / "flaky.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import os, pathlib
            if pathlib.Path({str(broken)!r}).exists():
                raise RuntimeError("plug-in broken for now")

            def score(response, sample):
                if response == "crash":
                    os._exit(1)
                return float(response)
            """
        )
    )
    with RewardPool({"flaky": f"{path}:score"}, workers=1, timeout_s=5.0) as pool:
        broken.touch()
        assert pool.grade("flaky", items("crash"))[0].error == "worker crashed (exit code 1)"
        failed = pool.grade("flaky", items("1"))[0]  # the replacement cannot load
        assert failed.score == 0.0 and "plug-in broken for now" in failed.error
        broken.unlink()
        deadline = time.monotonic() + 30  # backoff 0.5, 1, 2, ... s: well within the margin
        while pool.health()["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.grade("flaky", items("2"))[0].score == 2.0
        assert pool.health()["status"] == "ok"


def test_an_edited_plugin_file_does_not_change_what_is_served(tmp_path):
    # the source is read once at start: a replacement worker runs it, not the edited file
    path = tmp_path / "versioned.py"
    version = "import os\ndef score(response, sample):\n    if response == 'crash':\n        os._exit(1)\n    return {v}\n"
    path.write_text(version.format(v=1.0))
    with RewardPool({"v": f"{path}:score"}, workers=1, timeout_s=5.0) as pool:
        assert pool.grade("v", items("x"))[0].score == 1.0
        path.write_text(version.format(v=2.0))
        assert pool.grade("v", items("crash"))[0].error == "worker crashed (exit code 1)"
        assert pool.grade("v", items("x"))[0].score == 1.0
        assert pool.stats().restarts == 1


def test_an_edited_module_is_refused_by_a_replacement_worker(tmp_path, monkeypatch):
    # "module:function": the module is imported in each worker; a replacement that finds its file
    # changed refuses to serve (the served set is fixed at start) instead of running a new version
    module = tmp_path / "pinned_reward_mod.py"
    version = "import os\ndef score(response, sample):\n    if response == 'crash':\n        os._exit(1)\n    return {v}\n"
    module.write_text(version.format(v=1.0))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers get the parent's sys.path
    with RewardPool({"m": "pinned_reward_mod:score"}, workers=1, timeout_s=5.0) as pool:
        assert pool.grade("m", items("x"))[0].score == 1.0
        module.write_text(version.format(v=2.0))
        assert pool.grade("m", items("crash"))[0].error == "worker crashed (exit code 1)"
        refused = pool.grade("m", items("x"))[0]
        assert refused.score == 0.0 and f"{module} changed since the pool started" in refused.error
        assert "changed since the pool started" in pool.health()["detail"]


# ---------------------------------------------------------------------- cancellation and fairness
@pytest.fixture
def blocking_spec(tmp_path):
    path = tmp_path / "blocking.py"
    path.write_text(BLOCKING)
    return f"{path}:blocks"


def test_a_cancelled_call_stops_before_its_next_item(tmp_path, blocking_spec):
    # one worker holds the whole 4-item chunk; after the cancel it must not start item 1
    prefixes = [tmp_path / f"a{i}" for i in range(4)]
    with RewardPool({"blocks": blocking_spec, "mcq": "mcq"}, workers=1, timeout_s=60.0) as pool:
        try:
            future = pool.submit("blocks", items(*(str(p) for p in prefixes)))
            wait_for(tmp_path / "a0.started")
            assert future.cancel()
            (tmp_path / "a0.release").touch()
            # item 1 would block 30 s (never released): this answer comes first only if it never starts
            assert pool.submit("mcq", items("Answer: B")).result(timeout=25)[0].score == 1.0
            assert not (tmp_path / "a1.started").exists()
        finally:
            for p in prefixes:
                (tmp_path / f"{p.name}.release").touch()


def test_each_call_gets_its_share_of_the_pool(tmp_path, blocking_spec):
    # one worker, chunks of one item: after a0, the waiting call b goes before a1
    prefixes = [tmp_path / name for name in ("a0", "a1", "a2", "b0")]
    with RewardPool({"blocks": blocking_spec}, workers=1, timeout_s=60.0, chunk_size=1) as pool:
        try:
            first = pool.submit("blocks", items(*(str(p) for p in prefixes[:3])))
            wait_for(tmp_path / "a0.started")
            second = pool.submit("blocks", items(str(prefixes[3])))
            (tmp_path / "a0.release").touch()
            wait_for(tmp_path / "b0.started", limit_s=25)  # first-come-first-served would start a1
            assert not (tmp_path / "a1.started").exists()
        finally:
            for p in prefixes:
                (tmp_path / f"{p.name}.release").touch()
        assert [r.score for r in first.result(timeout=60)] == [1.0, 1.0, 1.0]
        assert [r.score for r in second.result(timeout=60)] == [1.0]


# ---------------------------------------------------------------------- recycling and shutdown
PID_FUNCTION = "import os\ndef pid(response, sample):\n    return float(os.getpid())\n"


def test_workers_are_recycled_after_max_items(tmp_path):
    path = tmp_path / "pid.py"
    path.write_text(PID_FUNCTION)
    with RewardPool(
        {"pid": f"{path}:pid"}, workers=1, timeout_s=5.0, chunk_size=2, max_items_per_worker=4
    ) as pool:
        pids = [r.score for r in pool.grade("pid", items(*"12345678"))]  # 4 chunks of 2
        assert len(set(pids[:4])) == 1 and len(set(pids[4:])) == 1 and pids[0] != pids[4]
        assert pool.stats().recycles >= 1 and pool.stats().restarts == 0


def test_workers_are_recycled_above_the_memory_ceiling(tmp_path):
    path = tmp_path / "pid.py"
    path.write_text(PID_FUNCTION)
    # any Python process holds more than 1 MiB: every worker is replaced after each chunk
    with RewardPool(
        {"pid": f"{path}:pid"}, workers=1, timeout_s=5.0, chunk_size=1, max_worker_rss_mb=1
    ) as pool:
        pids = [r.score for r in pool.grade("pid", items("1", "2", "3"))]
        assert len(set(pids)) == 3
