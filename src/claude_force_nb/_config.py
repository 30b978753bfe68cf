"""Defaults, and the one place environment variables are read.

Everything else takes explicit arguments; `read_environment()` is called at the edges (the orchestrator's
constructor, the cache's constructor, the notebook extension) so tests can pass a fake environment instead
of patching `os.environ`.

Environment variables:

| variable | meaning |
|---|---|
| `ANTHROPIC_API_KEY` | the API key; without it (and without a base URL) the notebook uses the simulator |
| `ANTHROPIC_BASE_URL` | another endpoint (a proxy, or a simulator started elsewhere) |
| `CLAUDE_CACHE_SECRET` | the HMAC secret for cache entries (else a per-user secret file is created) |
| `CLAUDE_FORCE_NB_CACHE_DIR` | where the disk cache lives (default: the user's cache dir) |
| `CLAUDE_FORCE_NB_CONFIG_DIR` | where the per-user secret lives (default: the user's config dir) |
| `CLAUDE_FORCE_NB_DATA_DIR` | where the registry of Message Batches lives (default: the user's data dir) |
| `CLAUDE_FORCE_NB_COORDINATION` | Redis URL: orchestrators on it (same scope) share budget and limits |
| `CLAUDE_FORCE_NB_SIMULATE` | `1` forces the bundled simulator even when a key is set (Binder, demos) |
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_CACHE_BACKEND",
    "DEFAULT_CACHE_MAX_SIZE_MB",
    "DEFAULT_CACHE_TIMEOUT_S",
    "DEFAULT_CACHE_TTL_HOURS",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_TEMPLATE_CHARS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT_S",
    "Environment",
    "mask_secret",
    "mask_url",
    "read_environment",
]

DEFAULT_MODEL = "claude-sonnet-5-5"
"""The current Sonnet: the usual balance of speed, quality and price for notebook work."""
DEFAULT_MAX_TOKENS = 4096
DEFAULT_MAX_CONCURRENT = 10
DEFAULT_MAX_TEMPLATE_CHARS = 200_000
"""Largest text one `{{name}}` in a `%%agent` cell may expand to: about 50,000 tokens, a quarter of a 200k
context window. A whole DataFrame pasted by mistake (a million rows is ~12 million characters) is refused
with the size, instead of being sent, and billed, without a word."""
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_CACHE_TTL_HOURS = 24.0
DEFAULT_CACHE_MAX_SIZE_MB = 1000.0
DEFAULT_CACHE_TIMEOUT_S = 1.0
"""How long a call waits for one response-cache lookup or store (a healthy one takes well under 1 ms)."""
DEFAULT_CACHE_BACKEND = "disk"

_APP = "claude_force_nb"


@dataclass(frozen=True, kw_only=True)
class Environment:
    """What the process environment says, read once."""

    api_key: str | None = field(repr=False)
    base_url: str | None
    cache_secret: str | None = field(repr=False)
    cache_dir: Path
    config_dir: Path
    simulate: bool
    data_dir: Path
    coordination: str | None = field(default=None, repr=False)  # a Redis URL may carry a password

    @property
    def has_credentials(self) -> bool:
        """True when calls can go to a real endpoint: a key, or an explicit base URL."""
        return bool(self.api_key) or bool(self.base_url)


def mask_secret(value: str | None) -> str:
    """How a key or secret may be shown anywhere (reprs, messages, logs): `sk-ant-…1234` at most.

    The last four characters only for a value long enough that they give nothing away (16+), the `sk-ant-`
    prefix only because it says what kind of key it is; anything else is `…`.
    """
    if not value:
        return "none"
    head = "sk-ant-" if value.startswith("sk-ant-") else ""
    tail = value[-4:] if len(value) >= 16 else ""
    return f"{head}…{tail}"


def mask_url(url: str) -> str:
    """`url` with any password in it masked (`redis://:…@host:6379/0`), for reprs, frames and messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:…@{host}"


def _user_dir(environ: Mapping[str, str], xdg_var: str, posix_default: str, mac: str, win_var: str) -> Path:
    """The platform's per-user folder of one kind (XDG on Linux, ~/Library on macOS, %LOCALAPPDATA%)."""
    home = Path(environ.get("HOME") or Path.home())
    if sys.platform == "win32":
        base = environ.get(win_var)
        return Path(base) if base else home / "AppData" / "Local"
    if sys.platform == "darwin":
        return home / "Library" / mac
    xdg = environ.get(xdg_var)
    return Path(xdg) if xdg and os.path.isabs(xdg) else home / posix_default


def read_environment(environ: Mapping[str, str] | None = None) -> Environment:
    """Read the variables in this module's docstring from `environ` (default: `os.environ`)."""
    env = os.environ if environ is None else environ
    cache_root = _user_dir(env, "XDG_CACHE_HOME", ".cache", "Caches", "LOCALAPPDATA")
    config_root = _user_dir(env, "XDG_CONFIG_HOME", ".config", "Application Support", "APPDATA")
    data_root = _user_dir(env, "XDG_DATA_HOME", ".local/share", "Application Support", "LOCALAPPDATA")
    data_dir = env.get("CLAUDE_FORCE_NB_DATA_DIR")
    cache_dir = env.get("CLAUDE_FORCE_NB_CACHE_DIR")
    config_dir = env.get("CLAUDE_FORCE_NB_CONFIG_DIR")
    return Environment(
        api_key=env.get("ANTHROPIC_API_KEY") or None,
        base_url=env.get("ANTHROPIC_BASE_URL") or None,
        cache_secret=env.get("CLAUDE_CACHE_SECRET") or None,
        cache_dir=Path(cache_dir).expanduser() if cache_dir else cache_root / _APP,
        config_dir=Path(config_dir).expanduser() if config_dir else config_root / _APP,
        data_dir=Path(data_dir).expanduser() if data_dir else data_root / _APP,
        coordination=env.get("CLAUDE_FORCE_NB_COORDINATION") or None,
        simulate=env.get("CLAUDE_FORCE_NB_SIMULATE", "").strip().lower() in ("1", "true", "yes", "on"),
    )
