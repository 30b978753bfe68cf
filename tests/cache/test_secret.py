"""Where the HMAC secret comes from, and how its file is created."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from _cache_support import make_completion, make_request

from claude_force_nb._cache import ResponseCache
from claude_force_nb._cache.secret import SECRET_FILE_NAME, load_or_create_secret, resolve_secret


def test_secret_file_is_private_and_outside_the_cache_dir(tmp_path: Path, environ: dict[str, str]) -> None:
    """The generated secret file is 0600, lives in the config dir, and nothing secret is in the cache dir."""
    with ResponseCache("disk", environ=environ) as cache:
        cache.put(make_request(), make_completion(), agent="a", cost_usd=0.1, latency_s=1.0)
    secret_file = Path(environ["CLAUDE_FORCE_NB_CONFIG_DIR"]) / SECRET_FILE_NAME
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    cache_dir = Path(environ["CLAUDE_FORCE_NB_CACHE_DIR"])
    assert not list(cache_dir.rglob(SECRET_FILE_NAME))
    secret = secret_file.read_bytes().strip()
    assert all(secret not in p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())


def test_secret_is_reused_across_instances(environ: dict[str, str]) -> None:
    """A second cache on the same machine reads the first one's secret, so it can serve its entries."""
    with ResponseCache("disk", environ=environ) as first:
        first.put(make_request(), make_completion(), agent="a", cost_usd=0.1, latency_s=1.0)
    with ResponseCache("disk", environ=environ) as second:
        assert second.get(make_request(), agent="a") is not None


def test_precedence_explicit_then_env_then_file(tmp_path: Path) -> None:
    """secret= wins over CLAUDE_CACHE_SECRET, which wins over the file."""
    config = tmp_path / "config"
    assert resolve_secret("given", env_secret="env", config_dir=config, cache_dir=None) == b"given"
    assert resolve_secret(None, env_secret="env", config_dir=config, cache_dir=None) == b"env"
    assert not config.exists()
    from_file = resolve_secret(None, env_secret=None, config_dir=config, cache_dir=None)
    assert from_file == (config / SECRET_FILE_NAME).read_bytes().strip()


def test_empty_secret_is_refused(tmp_path: Path) -> None:
    """An empty secret would make every MAC forgeable: refused."""
    with pytest.raises(ValueError, match="empty"):
        resolve_secret("", env_secret=None, config_dir=tmp_path, cache_dir=None)


def test_secret_inside_cache_dir_is_refused(tmp_path: Path) -> None:
    """A config dir inside the cache dir would put the secret beside the data it signs: refused."""
    with pytest.raises(ValueError, match="inside the cache dir"):
        load_or_create_secret(tmp_path / "cache" / "cfg", cache_dir=tmp_path / "cache")


def _race(config_dir: str, queue: multiprocessing.Queue[bytes]) -> None:  # runs in a spawned child
    queue.put(load_or_create_secret(Path(config_dir)))


def test_concurrent_creation_agrees_on_one_secret(tmp_path: Path) -> None:
    """Processes creating the secret at once all end up with the same one, and no temp files remain."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[bytes] = ctx.Queue()
    config = tmp_path / "config"
    workers = [ctx.Process(target=_race, args=(str(config), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    secrets = {queue.get(timeout=60) for _ in workers}
    for worker in workers:
        worker.join(timeout=60)
    assert len(secrets) == 1
    assert sorted(p.name for p in config.iterdir()) == [SECRET_FILE_NAME]


def test_memory_backend_without_secret_creates_no_file(tmp_path: Path, environ: dict[str, str]) -> None:
    """A memory-only cache uses a per-process secret and writes nothing to the config dir."""
    with ResponseCache("memory", environ=environ) as cache:
        cache.put(make_request(), make_completion(), agent="a", cost_usd=0.1, latency_s=1.0)
        assert cache.get(make_request(), agent="a") is not None
    assert not Path(environ["CLAUDE_FORCE_NB_CONFIG_DIR"]).exists()
