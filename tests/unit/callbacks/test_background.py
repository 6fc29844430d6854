"""The live analyzer's background: jobs in submission order, failures and closing surface."""

from __future__ import annotations

import threading

import pytest

from qd_bluesky.callbacks._background import Background, BackgroundClosed


@pytest.mark.parametrize("threaded", [True, False])
def test_jobs_run_in_submission_order(threaded):
    done: list[int] = []
    woken = threading.Event()
    bg = Background(threaded=threaded, wake=woken.set)
    for i in range(200):
        bg.submit(done.append, i)
    assert bg.wait(10)
    assert done == list(range(200))
    assert bg.pending == 0
    assert woken.is_set() == threaded  # inline, the caller is there to see
    bg.close()


@pytest.mark.parametrize("threaded", [True, False])
def test_a_failed_job_stops_the_rest_and_raises_in_the_caller(threaded):
    done: list[int] = []
    bg = Background(threaded=threaded)

    def fail():
        raise ZeroDivisionError("boom")

    bg.submit(done.append, 1)
    with pytest.raises(ZeroDivisionError) if not threaded else _nothing():
        bg.submit(fail)
    if threaded:
        bg.submit(done.append, 2)  # may be queued before the failure is seen
        with pytest.raises(ZeroDivisionError, match="boom"):
            bg.wait(10)
    assert done == [1]
    with pytest.raises(ZeroDivisionError):
        bg.submit(done.append, 3)
    bg.close()


def test_closing_drops_the_jobs_not_started_and_says_so():
    started, release = threading.Event(), threading.Event()
    done: list[int] = []
    bg = Background()

    def running():
        started.set()
        release.wait(10)

    bg.submit(running)
    assert started.wait(10)
    for i in range(5):
        bg.submit(done.append, i)
    closer = threading.Thread(target=bg.close)
    closer.start()
    release.set()
    closer.join(10)
    assert done == []
    with pytest.raises(BackgroundClosed, match="5 jobs not run"):
        bg.wait(1)


class _nothing:  # noqa: N801 - a null context manager that reads like pytest.raises
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
