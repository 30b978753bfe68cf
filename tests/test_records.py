"""Run records (`_records`): ids, final statuses, rows, the log's hooks, frames, thread-safe appends."""

from __future__ import annotations

import json
import logging
import math
import re
import threading

import pandas as pd
import pytest

from claude_force_nb._records import (
    FINAL_STATUSES,
    FRAME_COLUMNS,
    AttemptSpan,
    RunLog,
    RunRecord,
    new_run_id,
)


def record(run_id: str, **fields: object) -> RunRecord:
    return RunRecord(run_id=run_id, agent="a", model="m", **fields)  # type: ignore[arg-type]


def test_run_ids_are_unique_and_sort_in_creation_order() -> None:
    """`<6 hex of this process>-<counter>`: unique, and string order is creation order."""
    ids = [new_run_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(re.fullmatch(r"[0-9a-f]{6}-\d{6,}", run_id) for run_id in ids)
    assert len({run_id.split("-")[0] for run_id in ids}) == 1


@pytest.mark.parametrize(
    "status", ["queued", "running", "retrying", "succeeded", "failed", "cancelled", "refused", "cached"]
)
def test_a_record_is_done_exactly_in_a_final_status(status: str) -> None:
    """Queued, running and retrying calls are in progress; every other status is final."""
    assert record("r", status=status).done is (status not in ("queued", "running", "retrying"))
    assert (status in FINAL_STATUSES) is record("r", status=status).done


def test_rows_have_the_frame_columns_and_dicts_are_json() -> None:
    """`row()` is exactly the frame's columns; `to_dict()` is every field, spans included, as plain JSON."""
    live = record("r1", status="succeeded", output="hi", spans=[AttemptSpan(1.0, 2.0, "ok")])
    assert list(live.row()) == list(FRAME_COLUMNS)
    assert live.row()["output"] == "hi"
    data = json.loads(json.dumps(live.to_dict()))
    assert data["spans"] == [{"start": 1.0, "end": 2.0, "outcome": "ok"}]
    assert set(data) >= set(FRAME_COLUMNS) | {"spans", "queued_at", "error_type"}


def test_the_log_keeps_order_and_finds_the_latest_record_by_id() -> None:
    """Records stay in the order added; `get` finds the latest with an id; iteration is a snapshot, so
    adding while iterating is safe; clear and extend do what they say."""
    log = RunLog()
    first, second = log.add(record("r1")), log.add(record("r2"))
    again = log.add(record("r1", status="cached"))
    assert [r.run_id for r in log] == ["r1", "r2", "r1"] and len(log) == 3
    assert log[1] is second and log.get("r1") is again and log.get("nope") is None
    for r in log:
        log.add(record(f"{r.run_id}-copy"))
    assert len(log) == 6
    log.clear()
    assert len(log) == 0 and repr(log) == "RunLog(0 runs)"
    log.extend([first, second])
    assert list(log) == [first, second]


def test_finish_hooks_run_survive_failures_and_can_be_removed(caplog: pytest.LogCaptureFixture) -> None:
    """Every hook hears every finished record; a failing hook is logged and the next still runs; the remover
    stops a hook (calling it twice is harmless)."""
    log = RunLog()
    heard: list[str] = []

    def full_disk(r: RunRecord) -> None:
        raise OSError("no space left")

    log.on_finish(full_disk)
    remove = log.on_finish(lambda r: heard.append(r.run_id))
    with caplog.at_level(logging.ERROR, logger="claude_force_nb"):
        log.finished(record("r1", status="succeeded"))
    assert heard == ["r1"] and "no space left" in caplog.text and "r1" in caplog.text
    remove()
    remove()
    log.finished(record("r2", status="failed"))
    assert heard == ["r1"]


def test_the_frame_has_one_row_per_call_with_utc_times() -> None:
    """`to_frame()` has the documented columns, a row per record in order, and start/finish as UTC times
    (NaT where a call never started); an empty log gives an empty frame with the same columns."""
    empty = RunLog().to_frame()
    assert list(empty.columns) == list(FRAME_COLUMNS) and empty.empty
    log = RunLog()
    log.add(record("r1", status="succeeded", started_at=0.0, finished_at=1.5, cost_usd=0.25))
    log.add(record("r2", status="refused"))
    frame = log.to_frame()
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert list(frame["run_id"]) == ["r1", "r2"]
    assert frame.loc[0, "started_at"] == pd.Timestamp(0, unit="s", tz="UTC")
    assert frame.loc[0, "finished_at"] - frame.loc[0, "started_at"] == pd.Timedelta(seconds=1.5)
    assert pd.isna(frame.loc[1, "started_at"]) and math.isnan(frame.loc[1, "latency_s"])
    assert frame.loc[0, "cost_usd"] == 0.25


def test_appends_from_many_threads_are_all_kept() -> None:
    """The log is safe to append to from several threads (a background run and the kernel at once)."""
    log = RunLog()
    per_thread, threads = 500, 8

    def add_many(n: int) -> None:
        for i in range(per_thread):
            log.add(record(f"t{n}-{i}"))

    workers = [threading.Thread(target=add_many, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(log) == per_thread * threads
    assert len({r.run_id for r in log}) == per_thread * threads
