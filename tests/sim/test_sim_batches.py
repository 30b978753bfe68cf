"""The simulator's Message Batches endpoints, through the real SDK's `client.messages.batches`."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import pytest
from sim_support import API_KEY, MODEL, user

from claude_force_nb.sim import Fault, Simulator, serve
from claude_force_nb.sim.__main__ import _build_parser, config_from_args


def items(n: int, **params: Any) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"row-{i}",
            "params": {"model": MODEL, "max_tokens": 60, "messages": user(f"q{i}"), **params},
        }
        for i in range(n)
    ]


async def wait_ended(client: anthropic.AsyncAnthropic, batch_id: str, timeout_s: float = 30.0) -> Any:
    for _ in range(int(timeout_s / 0.02)):
        batch = await client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not end")


async def collect(client: anthropic.AsyncAnthropic, batch_id: str) -> list[Any]:
    return [line async for line in await client.messages.batches.results(batch_id)]


async def test_batch_life_cycle_has_the_real_wire_shapes(sim: Simulator, make_client: Any) -> None:
    """create -> in_progress with every item processing, 24 h expiry, no results_url; ended -> results_url,
    counts, and one JSONL line per request, in an order other than the input's, mapped back by custom_id."""
    client = make_client(sim)
    batch = await client.messages.batches.create(requests=items(20))
    assert batch.type == "message_batch" and batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 20 and batch.results_url is None
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(24 * 3600)
    ended = await wait_ended(client, batch.id)
    assert ended.request_counts.succeeded == 20 and ended.request_counts.processing == 0
    assert ended.results_url and ended.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    assert ended.ended_at is not None and ended.ended_at >= ended.created_at
    lines = await collect(client, batch.id)
    ids = [line.custom_id for line in lines]
    assert sorted(ids) == sorted(f"row-{i}" for i in range(20))
    assert ids != [f"row-{i}" for i in range(20)]
    by_id = {line.custom_id: line.result for line in lines}
    assert all(r.type == "succeeded" for r in by_id.values())
    assert "q7" in by_id["row-7"].message.content[0].text
    assert by_id["row-7"].message.usage.output_tokens > 0
    again = await collect(client, batch.id)
    assert [line.model_dump() for line in again] == [line.model_dump() for line in lines]
    stats = sim.stats()
    assert stats["batch_items"] == 20 and stats["requests"] == 0


async def test_list_pages_newest_first_with_cursors_and_keys_scope_batches(
    sim: Simulator, make_client: Any
) -> None:
    """list: newest first, `limit` pages that the SDK follows with after_id; before_id goes the other way;
    another key sees none of them and gets 404 for their ids."""
    client = make_client(sim)
    created = [(await client.messages.batches.create(requests=items(1))).id for _ in range(5)]
    newest_first = created[::-1]
    first = await client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == newest_first[:2] and first.has_more
    assert [b.id async for b in client.messages.batches.list(limit=2)] == newest_first
    page = await client.messages.batches.list(limit=2, after_id=newest_first[1])
    assert [b.id for b in page.data] == newest_first[2:4] and page.has_more
    before = await client.messages.batches.list(limit=2, before_id=newest_first[3])
    assert [b.id for b in before.data] == newest_first[1:3] and before.has_more
    other = make_client(sim, api_key="sk-someone-else")
    assert [b.id async for b in other.messages.batches.list()] == []
    with pytest.raises(anthropic.NotFoundError):
        await other.messages.batches.retrieve(created[0])
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.batches.list(limit=1001)


async def test_cancel_mid_way_keeps_the_processed_items(make_client: Any) -> None:
    """Cancelling a half-processed batch: `canceling`, then ended with the processed items as they were and
    the rest `canceled`."""
    with serve(batch_items_per_s=10.0) as slow:
        client = make_client(slow)
        batch = await client.messages.batches.create(requests=items(200))
        await asyncio.sleep(0.3)
        canceling = await client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        ended = await wait_ended(client, batch.id)
        counts = ended.request_counts
        assert counts.succeeded >= 1 and counts.canceled >= 1
        assert counts.succeeded + counts.canceled == 200
        kinds = [line.result.type for line in await collect(client, batch.id)]
        assert kinds.count("canceled") == counts.canceled and kinds.count("succeeded") == counts.succeeded


async def test_unprocessed_items_expire(make_client: Any) -> None:
    """A batch still unprocessed at expires_at ends with every such item `expired`."""
    with serve(batch_items_per_s=0.0, batch_expiry_s=0.2) as stuck:
        client = make_client(stuck)
        batch = await client.messages.batches.create(requests=items(3))
        await asyncio.sleep(0.3)
        ended = await wait_ended(client, batch.id)
        assert ended.request_counts.expired == 3 and ended.ended_at == ended.expires_at
        assert {line.result.type for line in await collect(client, batch.id)} == {"expired"}


async def test_items_error_by_probability_and_invalid_items_fail_alone(make_client: Any) -> None:
    """batch_error_rate makes some items `errored` (retryable overloaded_error); an invalid request or a
    streaming one errors with invalid_request_error while the others succeed."""
    with serve(batch_error_rate=0.5, seed=11) as flaky:
        client = make_client(flaky)
        requests = items(40)
        requests.append({"custom_id": "bad", "params": {"model": MODEL, "max_tokens": 0, "messages": []}})
        requests.append({"custom_id": "streamed", "params": {**requests[0]["params"], "stream": True}})
        batch = await client.messages.batches.create(requests=requests)
        ended = await wait_ended(client, batch.id)
        results = {line.custom_id: line.result for line in await collect(client, batch.id)}
        for custom_id in ("bad", "streamed"):
            assert results[custom_id].type == "errored"
            assert results[custom_id].error.error.type == "invalid_request_error"
        random_errors = [r for k, r in results.items() if k.startswith("row-") and r.type == "errored"]
        assert 1 <= len(random_errors) <= 39
        assert {r.error.error.type for r in random_errors} == {"overloaded_error"}
        assert ended.request_counts.errored == len(random_errors) + 2


async def test_delete_only_once_ended_and_results_only_once_ended(make_client: Any) -> None:
    """delete and results refuse a batch still in progress; once ended it is deleted and then unknown."""
    with serve(batch_items_per_s=0.0) as stuck:
        client = make_client(stuck)
        batch = await client.messages.batches.create(requests=items(2))
        with pytest.raises(anthropic.BadRequestError, match="cannot be deleted"):
            await client.messages.batches.delete(batch.id)
        with pytest.raises(anthropic.AnthropicError, match="results_url"):
            await client.messages.batches.results(batch.id)
        async with aiohttp.ClientSession() as http:
            url = f"{stuck.base_url}/v1/messages/batches/{batch.id}/results"
            async with http.get(url, headers={"x-api-key": API_KEY}) as response:
                assert response.status == 400
        await client.messages.batches.cancel(batch.id)
        await wait_ended(client, batch.id)
        deleted = await client.messages.batches.delete(batch.id)
        assert deleted.type == "message_batch_deleted" and deleted.id == batch.id
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.batches.retrieve(batch.id)


async def test_size_limits_and_custom_ids_are_checked(make_client: Any) -> None:
    """More requests than batch_max_requests is a 400, a body over batch_max_bytes a 413; custom_ids must be
    unique and 1-64 characters of [A-Za-z0-9_-]."""
    with serve(batch_max_requests=3, batch_max_bytes=2000) as small:
        client = make_client(small)
        with pytest.raises(anthropic.BadRequestError, match="at most 3"):
            await client.messages.batches.create(requests=items(4))
        with pytest.raises(anthropic.APIStatusError) as too_big:
            await client.messages.batches.create(requests=items(1, system="x" * 3000))
        assert too_big.value.status_code == 413
        with pytest.raises(anthropic.BadRequestError, match="not unique"):
            await client.messages.batches.create(requests=items(1) + items(1))
        bad = items(1)
        bad[0]["custom_id"] = "has space"
        with pytest.raises(anthropic.BadRequestError, match="custom_id"):
            await client.messages.batches.create(requests=bad)


async def test_faults_can_be_scripted_on_batch_calls(sim: Simulator, make_client: Any) -> None:
    """A scripted fault matching a batch path fails that call (a 529 here) and not the others."""
    client = make_client(sim)
    batch = await client.messages.batches.create(requests=items(1))
    sim.script(Fault("overloaded"), times=1, match="/cancel")
    with pytest.raises(anthropic.APIStatusError) as failed:
        await client.messages.batches.cancel(batch.id)
    assert failed.value.status_code == 529
    assert (await client.messages.batches.retrieve(batch.id)).id == batch.id
    assert sim.stats()["faults"] == {"overloaded": 1}


def test_command_line_takes_the_batch_options() -> None:
    """`python -m claude_force_nb.sim` maps its --batch-* flags onto the config."""
    args = _build_parser().parse_args(
        [
            "--batch-speed",
            "50",
            "--batch-error-rate",
            "0.1",
            "--batch-expiry",
            "5",
            "--batch-max-requests",
            "9",
        ]
    )
    config = config_from_args(args)
    assert (config.batch_items_per_s, config.batch_error_rate, config.batch_expiry_s) == (50.0, 0.1, 5.0)
    assert config.batch_max_requests == 9


async def test_process_mode_serves_batches(make_client: Any) -> None:
    """The command-line simulator (a subprocess) serves the batch endpoints too."""
    with serve(process=True, batch_items_per_s=1000.0) as process_sim:
        client = make_client(process_sim)
        batch = await client.messages.batches.create(requests=items(3))
        await wait_ended(client, batch.id)
        assert len(await collect(client, batch.id)) == 3


async def test_the_batch_path_has_its_own_prompt_cache(make_client: Any) -> None:
    """A prefix cached by an ordinary call is not read by a batch item (it writes its own), and the next
    batch item reads the batch path's copy."""
    system = [
        {"type": "text", "text": "long shared instructions " * 40, "cache_control": {"type": "ephemeral"}}
    ]
    with serve(min_cache_tokens=50) as cached:
        client = make_client(cached)
        first = await client.messages.create(model=MODEL, max_tokens=20, system=system, messages=user("a"))
        assert first.usage.cache_creation_input_tokens > 0
        requests = [
            {
                "custom_id": f"r{i}",
                "params": {"model": MODEL, "max_tokens": 20, "system": system, "messages": user("b")},
            }
            for i in range(2)
        ]
        batch = await client.messages.batches.create(requests=requests)
        await wait_ended(client, batch.id)
        usage = sorted(
            (line.result.message.usage for line in await collect(client, batch.id)),
            key=lambda u: u.cache_read_input_tokens,
        )
    assert usage[0].cache_read_input_tokens == 0
    assert usage[0].cache_creation_input_tokens == first.usage.cache_creation_input_tokens
    assert usage[1].cache_read_input_tokens == first.usage.cache_creation_input_tokens
