"""Where the cache's HMAC secret comes from. There is no default secret in the code, on purpose.

Order: an explicit `secret=`; else `CLAUDE_CACHE_SECRET`; else a per-user random secret kept in a file in the
*config* dir (never the cache dir: a cache folder gets shared, zipped and synced; a secret beside the data it
signs protects nothing, and the old cache lost a user's config by treating its folder as disposable).

Creating the file must be race-free: two kernels starting at once must agree on one secret, or each would
treat the other's entries as tampered. The secret is written to a private temp file (O_EXCL, mode 0600) and
then hard-linked to the final name; `link` fails if the name exists, so exactly one process wins and every
reader sees either no file or the whole file (never an empty one, which a crash between `open(O_EXCL)` and
`write` on the final name could leave behind). Filesystems without hard links fall back to O_EXCL on the
final name with a bounded wait for the content.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

__all__ = ["SECRET_FILE_NAME", "load_or_create_secret", "resolve_secret"]

SECRET_FILE_NAME = "cache-secret"
_SECRET_HEX_CHARS = 64  # 32 random bytes, hex-encoded so it can be copied into CLAUDE_CACHE_SECRET as is
_READ_WAIT_S = 2.0


def resolve_secret(
    secret: str | bytes | None, *, env_secret: str | None, config_dir: Path, cache_dir: Path | None
) -> bytes:
    """The secret to use, by the order in the module docstring."""
    if secret is not None:
        value = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not value:
            raise ValueError("the cache secret must not be empty")
        return value
    if env_secret:
        return env_secret.encode("utf-8")
    return load_or_create_secret(config_dir, cache_dir=cache_dir)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _read(path: Path) -> bytes | None:
    """The secret in `path`, waiting briefly for a concurrent O_EXCL writer; None if there is no file."""
    deadline = time.monotonic() + _READ_WAIT_S
    while True:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        if len(text) >= _SECRET_HEX_CHARS or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if len(text) < _SECRET_HEX_CHARS:
        raise ValueError(
            f"the cache secret file {path} is damaged; delete it (cached entries will be refused)"
        )
    return text.encode("ascii")


def load_or_create_secret(config_dir: Path, *, cache_dir: Path | None = None) -> bytes:
    """Read the per-user secret from `config_dir`, creating it (0600, race-free) on first use."""
    path = config_dir / SECRET_FILE_NAME
    if cache_dir is not None and _inside(path, cache_dir):
        raise ValueError(
            f"the cache secret would live inside the cache dir ({cache_dir}); use another config dir "
            "or set CLAUDE_CACHE_SECRET"
        )
    existing = _read(path)
    if existing is not None:
        return existing
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = (secrets.token_hex(_SECRET_HEX_CHARS // 2) + "\n").encode("ascii")
    tmp = config_dir / f".{SECRET_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race: use its secret
    except OSError:
        _create_without_link(path, data)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    winner = _read(path)
    if winner is None:  # pragma: no cover - the file was deleted between our create and read
        raise ValueError(f"the cache secret file {path} vanished while being created")
    return winner


def _create_without_link(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
