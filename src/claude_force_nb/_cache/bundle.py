"""Replay bundles: cached answers in one plain-JSON file, to share a reproducible analysis.

Layout:

```
{"format": "claude_force_nb.replay-bundle", "format_version": 1, "package_version": "0.1.0",
 "manifest": [{"key": "<hex>", "sha256": "<hex of the entry's canonical JSON>"}, ...],
 "entries": [{"key", "agent", "request", "response", "usage", "cost_usd", "latency_s", "created"}, ...]}
```

`request` is the full semantic request (see `key.py`), so an importer recomputes the key instead of trusting
it: a bundle cannot plant an answer under another question's key. Checksums catch damage; they are not a
signature (whoever writes a bundle can write matching checksums), which is why the key check matters and why
imported entries are re-signed with the *local* secret: the sender's secret never travels.

Import is all or nothing: every entry is checked before any is stored, and the first bad one is named in the
`BundleError`. Sizes are capped before parsing so a hostile or mistaken file cannot exhaust memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import BundleError
from .._request import Completion
from .._validate import nesting_place, path_problem, shorten
from .._version import __version__
from .entry import CacheHit, decode_entry, decode_request, encode_entry
from .key import canonical_json, request_from_semantic, request_key, semantic_request

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_ENTRIES",
    "MAX_BUNDLE_ENTRY_BYTES",
    "BundleEntry",
    "read_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "claude_force_nb.replay-bundle"
BUNDLE_FORMAT_VERSION = 1
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
"""Largest bundle file accepted (checked with stat() before reading a byte)."""
MAX_BUNDLE_ENTRIES = 100_000
MAX_BUNDLE_ENTRY_BYTES = 16 * 1024 * 1024
"""Largest single entry (its canonical JSON): far above any real answer plus prompt."""

_ENTRY_FIELDS = frozenset(
    {"key", "agent", "request", "response", "usage", "cost_usd", "latency_s", "created"}
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class BundleEntry:
    """One cached answer as it travels: enough to recompute its key and re-sign it."""

    key: str
    agent: str
    request: Mapping[str, Any]
    completion: Completion
    cost_usd: float
    latency_s: float
    created: float

    @classmethod
    def from_stored(cls, secret: bytes, key: str, value: bytes) -> BundleEntry:
        """The entry behind a stored value, verified (CorruptEntryError otherwise): what export writes."""
        hit = decode_entry(secret, key, value, verify=True).hit
        return cls(
            key=key,
            agent=hit.agent,
            request=decode_request(value),
            completion=hit.completion,
            cost_usd=hit.cost_usd,
            latency_s=hit.latency_s,
            created=hit.created_at,
        )

    def sign(self, secret: bytes, *, expires_at: float) -> bytes:
        """The stored value for this entry under `secret` (import re-signs with the local one)."""
        return encode_entry(
            secret,
            self.key,
            completion=self.completion,
            agent=self.agent,
            model=str(self.request["model"]),
            created_at=self.created,
            expires_at=expires_at,
            cost_usd=self.cost_usd,
            latency_s=self.latency_s,
            request_json=canonical_json(self.request),
        )

    def hit(self) -> CacheHit:
        return CacheHit(
            key=self.key,
            completion=self.completion,
            cost_usd=self.cost_usd,
            latency_s=self.latency_s,
            created_at=self.created,
            agent=self.agent,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "agent": self.agent,
            "request": dict(self.request),
            "response": self.completion.to_dict(),
            "usage": self.completion.usage.to_dict(),
            "cost_usd": None if math.isnan(self.cost_usd) else self.cost_usd,
            "latency_s": self.latency_s,
            "created": self.created,
        }


def write_bundle(path: Path, entries: Sequence[BundleEntry]) -> int:
    """Write `entries` to `path` atomically (temp file in the same folder, fsync, os.replace)."""
    documents = [e.to_json() for e in entries]
    manifest = [{"key": d["key"], "sha256": hashlib.sha256(canonical_json(d)).hexdigest()} for d in documents]
    bundle = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "package_version": __version__,
        "manifest": manifest,
        "entries": documents,
    }
    data = json.dumps(bundle, ensure_ascii=False, allow_nan=False, indent=1).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return len(documents)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _number(value: object, *, nullable: bool = False) -> float:
    if value is None and nullable:
        return math.nan
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError("must be a finite number >= 0")
    return float(value)


def _entry(document: object, manifest_item: object) -> BundleEntry:
    """Check one entry against its manifest line; ValueError/TypeError/KeyError says what is wrong."""
    if not isinstance(document, dict) or set(document) != _ENTRY_FIELDS:
        raise ValueError(f"entry must be an object with exactly the fields {sorted(_ENTRY_FIELDS)}")
    encoded = canonical_json(document)
    if len(encoded) > MAX_BUNDLE_ENTRY_BYTES:
        raise ValueError(f"entry is larger than MAX_BUNDLE_ENTRY_BYTES ({MAX_BUNDLE_ENTRY_BYTES})")
    if not isinstance(manifest_item, dict) or manifest_item.get("key") != document["key"]:
        raise ValueError("manifest line does not name this entry's key")
    if manifest_item.get("sha256") != hashlib.sha256(encoded).hexdigest():
        raise ValueError("checksum mismatch (the entry was changed or damaged)")
    key, agent = document["key"], document["agent"]
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        raise ValueError("key is not a hex SHA-256")
    if not isinstance(agent, str) or not agent:
        raise ValueError("agent must be a non-empty string")
    request = request_from_semantic(document["request"])
    if request_key(request) != key:
        raise ValueError("key does not match the key recomputed from the request")
    completion = Completion.from_dict(document["response"])
    if completion.stop_reason is None:
        raise ValueError("response is not a finished completion")
    if document["usage"] != completion.usage.to_dict():
        raise ValueError("usage does not match the response's usage")
    created = document["created"]
    return BundleEntry(
        key=key,
        agent=agent,
        request=semantic_request(request),  # normalised: what the importer signs is what the key hashes
        completion=completion,
        cost_usd=_number(document["cost_usd"], nullable=True),
        latency_s=_number(document["latency_s"]),
        created=_number(created),
    )


def read_bundle(path: Path) -> list[BundleEntry]:
    """Read and check a whole bundle; BundleError (naming the entry) on the first problem."""
    try:
        size = os.stat(path).st_size
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise BundleError(f"{shorten(str(path))}: cannot read the bundle: {path_problem(exc)}") from None
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: bundle is {size} bytes, above MAX_BUNDLE_BYTES ({MAX_BUNDLE_BYTES})")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BUNDLE_BYTES + 1)
        bundle = json.loads(data, parse_constant=_reject_constant)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable JSON bundle: {exc}") from exc
    except RecursionError:
        line, column = nesting_place(data.decode("utf-8", "replace")) or (1, 1)
        raise BundleError(
            f"{path}: not a readable JSON bundle: nested more than 100 levels deep at line {line}, "
            f"column {column}"
        ) from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: bundle grew above MAX_BUNDLE_BYTES while being read")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a {BUNDLE_FORMAT} file")
    if bundle.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {bundle.get('format_version')!r}; this version reads "
            f"{BUNDLE_FORMAT_VERSION}"
        )
    documents, manifest = bundle.get("entries"), bundle.get("manifest")
    if not isinstance(documents, list) or not isinstance(manifest, list) or len(documents) != len(manifest):
        raise BundleError(f"{path}: entries and manifest must be lists of the same length")
    if len(documents) > MAX_BUNDLE_ENTRIES:
        raise BundleError(
            f"{path}: {len(documents)} entries, above MAX_BUNDLE_ENTRIES ({MAX_BUNDLE_ENTRIES})"
        )
    entries: list[BundleEntry] = []
    seen: set[str] = set()
    for index, (document, manifest_item) in enumerate(zip(documents, manifest, strict=True)):
        name = _describe(index, document)
        try:
            entry = _entry(document, manifest_item)
        except (ValueError, TypeError, KeyError) as exc:
            raise BundleError(f"{path}: {name} refused: {exc}") from exc
        except RecursionError:  # nested deep enough to pass the parser yet not to be re-encoded
            raise BundleError(f"{path}: {name} refused: nested too deeply") from None
        if entry.key in seen:
            raise BundleError(f"{path}: {name} refused: duplicate key")
        seen.add(entry.key)
        entries.append(entry)
    return entries


def _describe(index: int, document: object) -> str:
    if isinstance(document, dict):
        key, agent = document.get("key"), document.get("agent")
        if isinstance(key, str) and isinstance(agent, str):
            return f"entry {index} (key {key[:12]}, agent {agent!r})"
    return f"entry {index}"
