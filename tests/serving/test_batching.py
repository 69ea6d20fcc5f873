"""Batch formation: requests read during the turn after the first one join its batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cloudserve.serving._batching import Batcher
from cloudserve.serving._model import load_model


def test_a_request_read_one_loop_turn_later_joins_the_batch(custom_dir: Path):
    model = load_model(custom_dir)

    async def scenario() -> list[list[float]]:
        batcher = Batcher(model, max_batch_size=8, max_wait_ms=0, max_queue=100)
        batcher.start()
        await asyncio.sleep(0)  # the batcher waits for work
        loop = asyncio.get_running_loop()
        later: list[asyncio.Future] = []
        first = asyncio.ensure_future(batcher.submit(model.prepare([[1.0, 2.0]]), {}))
        # like a request the server reads on the next pass of the event loop
        loop.call_soon(
            lambda: later.append(
                asyncio.ensure_future(batcher.submit(model.prepare([[3.0, 4.0]]), {}))
            )
        )
        outputs = [await first]
        outputs.append(await later[0])
        await batcher.stop()
        return outputs

    outputs = asyncio.run(scenario())
    assert model.predictor.batches == [2]  # one model call for both
    assert [model.finish(o) for o in outputs] == [[3.5], [7.5]]
