"""A transaction that ends while the stage reads on (Stage.finish_later, stage 1's close):
nothing else joins it, and what it raises reaches the stage's recovery. Against a
recording stand-in for the producer's transaction calls (the real broker runs in the
integration and fault tests)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import ProducerFenced

from privmon.agents.kafka_stage import Stage


class Recorder:
    """The transaction calls of AIOKafkaProducer, each taking a little while."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def _call(self, name: str) -> None:
        self.calls.append(f"{name} starts")
        await asyncio.sleep(0.01)
        self.calls.append(f"{name} ends")

    async def begin_transaction(self) -> None:
        await self._call("begin")

    async def commit_transaction(self) -> None:
        await self._call("commit")

    async def abort_transaction(self) -> None:
        await self._call("abort")

    async def stop(self) -> None:
        self.calls.append("stop")


def _stage() -> tuple[Stage, Recorder]:
    stage = Stage("s1", bootstrap="127.0.0.1:1", transactional_id="t-s1-w",
                  kafka_options={})
    stage.producer = recorder = Recorder()  # type: ignore[assignment]
    return stage, recorder


async def _close_then_dead_letter(stage: Stage, recorder: Recorder) -> None:
    """A close's transaction ended in the background, then a dead letter's begin."""
    await stage.begin()

    async def end() -> None:
        await asyncio.sleep(0.02)  # (the broker's answers)
        await stage.commit()

    stage.finish_later(end())
    await asyncio.sleep(0)  # (the stage reads on meanwhile)
    recorder.calls.append("read on")
    await stage.begin()  # a dead letter: a new transaction, after the close's commit
    recorder.calls.append("dead letter sent")


def test_the_next_transaction_begins_after_the_one_ending_in_the_background():
    async def run() -> list[str]:
        stage, recorder = _stage()
        await _close_then_dead_letter(stage, recorder)
        return recorder.calls

    assert asyncio.run(run()) == ["begin starts", "begin ends", "read on", "commit starts",
                                  "commit ends", "begin starts", "begin ends",
                                  "dead letter sent"]


def test_without_waiting_the_dead_letter_would_join_the_close(monkeypatch):
    """The negative control: a ``begin`` that does not wait finds the close's
    transaction still open, and its send would commit with the close."""
    async def no_wait(self: Stage) -> None:
        return None

    monkeypatch.setattr(Stage, "settled", no_wait)

    async def run() -> list[str]:
        stage, recorder = _stage()
        await _close_then_dead_letter(stage, recorder)
        await stage.settled()
        await asyncio.sleep(0.05)
        return recorder.calls

    calls = asyncio.run(run())
    assert calls.index("dead letter sent") < calls.index("commit starts")
    assert calls.count("begin starts") == 1  # (the second begin found the close's open)


def test_what_the_ending_raised_reaches_the_stage():
    async def run() -> None:
        stage, _ = _stage()
        await stage.begin()

        async def end() -> None:
            raise ProducerFenced()

        stage.finish_later(end())
        await asyncio.sleep(0)
        with pytest.raises(ProducerFenced):
            stage.check()  # (the drive loop's, before each step)
        stage.check()  # raised once: then it is the recovery's
        stage.finish_later(end())
        with pytest.raises(RuntimeError, match="still ending; begin"):
            stage.finish_later(end())  # (one at a time: begin settles the last first)
        with pytest.raises(ProducerFenced):
            await stage.begin()

    asyncio.run(run())


def test_abort_and_fail_end_what_is_ending_first():
    async def run() -> tuple[list[str], bool]:
        stage, recorder = _stage()
        await stage.begin()

        async def end() -> None:
            await asyncio.sleep(0.02)
            await stage.commit()

        stage.finish_later(end())
        await stage.abort()  # a rebalance or a stop: the commit goes through, then nothing
        calls = list(recorder.calls)
        await stage.begin()
        cancelled = asyncio.Event()

        async def stuck() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        stage.finish_later(stuck())
        await asyncio.sleep(0)
        await stage.fail(ProducerFenced())  # its producer goes: the ending is cancelled
        return calls, cancelled.is_set()

    calls, cancelled = asyncio.run(run())
    assert calls == ["begin starts", "begin ends", "commit starts", "commit ends"]
    assert cancelled
