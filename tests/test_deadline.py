"""Deadlines: one timer bounding the awaits of many tasks, as asyncio.timeout bounds one."""

from __future__ import annotations

import asyncio

import pytest

from providers.deadline import Deadlines


async def test_an_await_past_its_deadline_raises_timeout_and_one_within_it_returns() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())
    with pytest.raises(TimeoutError):
        await deadlines.within(asyncio.sleep(10), deadlines.after(0.05))
    assert await deadlines.within(asyncio.sleep(0.01, "done"), deadlines.after(5)) == "done"


async def test_each_task_is_held_to_its_own_deadline_whatever_order_they_come_in() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())

    async def waited(seconds: float, bound: float) -> str:
        try:
            return await deadlines.within(asyncio.sleep(seconds, "answered"), deadlines.after(bound))
        except TimeoutError:
            return "timed out"

    # A later deadline first, then an earlier one (the timer must move up), then one never reached.
    results = await asyncio.gather(waited(10, 0.3), waited(10, 0.05), waited(0.1, 5), waited(10, 0.15))
    assert results == ["timed out", "timed out", "answered", "timed out"]


async def test_a_deadline_already_past_raises() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())
    with pytest.raises(TimeoutError):
        await deadlines.within(asyncio.sleep(1), deadlines.after(-1))


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())
    task = asyncio.create_task(deadlines.within(asyncio.sleep(10), deadlines.after(5)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_calls_with_one_timeout_share_the_timer_armed_for_the_first() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())
    await deadlines.within(asyncio.sleep(0), deadlines.after(30))
    armed = deadlines._timer
    for _ in range(100):
        await deadlines.within(asyncio.sleep(0), deadlines.after(30))
    assert armed is not None and deadlines._timer is armed  # not re-armed by any of the hundred
