"""Replay bundles: round trip across secrets, and refusal of anything damaged, oversized or mismatched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _cache_support import FakeClock, make_completion, make_request

from claude_force_nb._cache import ResponseCache, bundle
from claude_force_nb._cache.key import semantic_request
from claude_force_nb._exceptions import BundleError
from claude_force_nb._version import __version__


def _source(clock: FakeClock, n: int = 3) -> ResponseCache:
    cache = ResponseCache("memory", secret="sender", clock=clock)
    for i in range(n):
        agent = "analyst" if i % 2 == 0 else "writer"
        cache.put(
            make_request(f"q{i}"), make_completion(f"answer {i}"), agent=agent, cost_usd=0.1 * i, latency_s=i
        )
    return cache


def test_round_trip_into_a_cache_with_another_secret(tmp_path: Path, clock: FakeClock) -> None:
    """Export from one cache, import into another (different secret, disk tier): hits are served."""
    path = tmp_path / "out" / "bundle.json"
    assert _source(clock).export_bundle(path) == 3
    clock.advance(1000)
    with ResponseCache("disk", cache_dir=tmp_path / "c", secret="receiver", clock=clock, ttl_hours=1) as dest:
        assert dest.import_bundle(path) == 3
        hit = dest.get(make_request("q2"), agent="analyst")
        assert hit is not None
        assert (hit.completion.text, hit.cost_usd, hit.latency_s, hit.agent) == (
            "answer 2",
            0.2,
            2.0,
            "analyst",
        )
        assert hit.created_at == clock.now - 1000  # the original creation time travels
        frame = dest.entries_frame()
        assert set(frame["expires_in_s"]) == {3600.0}  # a fresh TTL from import time


def test_bundle_layout(tmp_path: Path, clock: FakeClock) -> None:
    """The file is plain JSON with a manifest, versions and the full semantic request per entry."""
    path = tmp_path / "b.json"
    _source(clock).export_bundle(path, agents=["writer"])
    data = json.loads(path.read_text())
    assert (data["format"], data["format_version"], data["package_version"]) == (
        bundle.BUNDLE_FORMAT,
        bundle.BUNDLE_FORMAT_VERSION,
        __version__,
    )
    (entry,) = data["entries"]
    assert entry["agent"] == "writer"
    assert entry["request"] == json.loads(json.dumps(semantic_request(make_request("q1"))))
    assert entry["usage"] == entry["response"]["usage"]
    assert data["manifest"][0]["key"] == entry["key"]
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temp file


def _corrupt(path: Path, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("what", "edit", "message"),
    [
        ("answer edited", lambda d: d["entries"][1]["response"].update(text="forged"), "entry 1 .*checksum"),
        (
            "request edited",
            lambda d: d["entries"][1]["request"].update(system="other"),
            "entry 1 .*checksum",
        ),
        ("manifest key swapped", lambda d: d["manifest"][2].update(key="0" * 64), "entry 2 .*manifest"),
        ("extra field", lambda d: d["entries"][0].update(extra=1), "entry 0 .*fields"),
        ("format version", lambda d: d.update(format_version=99), "format version 99"),
        ("not a bundle", lambda d: d.update(format="zip"), "not a"),
        ("manifest short", lambda d: d["manifest"].pop(), "same length"),
    ],
)
def test_damaged_bundle_is_refused_and_nothing_imported(
    tmp_path: Path, clock: FakeClock, what: str, edit: Any, message: str
) -> None:
    """Any damaged entry fails the whole import with the entry named; the destination stays empty."""
    path = tmp_path / "b.json"
    _source(clock).export_bundle(path)
    _corrupt(path, edit)
    dest = ResponseCache("memory", secret="receiver", clock=clock)
    with pytest.raises(BundleError, match=message):
        dest.import_bundle(path)
    assert dest.stats().entries == 0, what


def test_key_not_matching_request_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    """A bundle with consistent checksums but an answer planted under another question's key is refused."""
    path = tmp_path / "b.json"
    _source(clock).export_bundle(path)

    def plant(data: dict[str, Any]) -> None:
        entry = data["entries"][0]
        entry["request"] = json.loads(json.dumps(semantic_request(make_request("a different question"))))
        data["manifest"][0]["sha256"] = bundle.hashlib.sha256(bundle.canonical_json(entry)).hexdigest()

    _corrupt(path, plant)
    dest = ResponseCache("memory", secret="r", clock=clock)
    with pytest.raises(BundleError, match=r"entry 0 .*recomputed"):
        dest.import_bundle(path)
    assert dest.stats().entries == 0


def test_oversized_bundles_are_refused(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files above the size cap, or with too many entries, are refused before import."""
    path = tmp_path / "b.json"
    _source(clock).export_bundle(path)
    dest = ResponseCache("memory", secret="r", clock=clock)
    monkeypatch.setattr(bundle, "MAX_BUNDLE_BYTES", path.stat().st_size - 1)
    with pytest.raises(BundleError, match="MAX_BUNDLE_BYTES"):
        dest.import_bundle(path)
    monkeypatch.undo()
    monkeypatch.setattr(bundle, "MAX_BUNDLE_ENTRIES", 2)
    with pytest.raises(BundleError, match="MAX_BUNDLE_ENTRIES"):
        dest.import_bundle(path)
    monkeypatch.setattr(bundle, "MAX_BUNDLE_ENTRIES", 100)
    monkeypatch.setattr(bundle, "MAX_BUNDLE_ENTRY_BYTES", 100)
    with pytest.raises(BundleError, match=r"entry 0 .*MAX_BUNDLE_ENTRY_BYTES"):
        dest.import_bundle(path)
    assert dest.stats().entries == 0


def test_not_json_is_refused(tmp_path: Path) -> None:
    """A truncated file is a BundleError, not a JSONDecodeError."""
    path = tmp_path / "b.json"
    path.write_text('{"format": "claude_force_nb.replay-bundle", "entries": [')
    with pytest.raises(BundleError, match="JSON"):
        ResponseCache("memory", secret="r").import_bundle(path)


def test_deeply_nested_bundle_is_a_bundle_error(tmp_path: Path) -> None:
    """A RecursionError from the JSON parser becomes a BundleError naming the file and the place."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match=r"deep\.json: .*nested more than 100 levels deep at line 1"):
        ResponseCache("memory", secret="r").import_bundle(path)


@pytest.mark.parametrize(("name", "problem"), [("a\x00b", "NUL byte"), ("z" * 5000, "File name too long")])
def test_unusable_bundle_paths_are_bundle_errors(name: str, problem: str) -> None:
    """A NUL byte raised ValueError from os.stat; the message stays short whatever the path's length."""
    with pytest.raises(BundleError, match=problem) as info:
        ResponseCache("memory", secret="r").import_bundle(name)
    assert len(str(info.value)) < 200
