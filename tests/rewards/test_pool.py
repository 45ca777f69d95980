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
    """
)

SAMPLE = Sample(id="q", question="?", options={"A": "x", "B": "y"}, answer="B")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    path = tmp_path_factory.mktemp("user_rewards") / "user_rewards.py"
    path.write_text(USER_FUNCTIONS)
    specs = {
        name: f"{path}:{name}" for name in ("as_number", "raises_on_bad", "hangs_on_hang", "exits_on_crash")
    }
    specs["configured_mcq"] = RewardConfig(fn="mcq")
    with RewardPool(specs, workers=2, timeout_s=1.0, chunk_size=4) as p:
        yield p


def items(*responses: str) -> list[tuple[str, Sample]]:
    return [(r, SAMPLE) for r in responses]


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
        later = pool.grade("once", items("4"))
        assert (
            later[0].error.startswith("reward worker failed to start")
            and "second load refused" in later[0].error
        )
        assert pool.stats().alive == 0


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
        assert results[2].error == "reward worker failed to start: worker did not start within 8s"
        assert pool.stats().alive == 0
