"""No API key in anything the package shows or saves: reprs, frames, events, logs, errors, notebooks."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import claude_force_nb
from claude_force_nb import AsyncAgentOrchestrator, define_agent
from claude_force_nb._config import read_environment
from claude_force_nb._loop import run_blocking
from claude_force_nb._session import NotebookSession, SessionSettings
from claude_force_nb.sim import Simulator, serve

KEY = "sk-ant-test-SECRETSECRET-1234"
HIDDEN = "SECRETSECRET"  # the part of KEY that must never appear; `sk-ant-…1234` may


def _shown(obj: Any) -> list[str]:
    """Every way the package may render `obj`: repr, str and each `_repr_*_` it has."""
    texts = [repr(obj), str(obj)]
    for name in ("_repr_markdown_", "_repr_html_", "_repr_pretty_text_"):
        method = getattr(obj, name, None)
        if callable(method):
            texts.append(str(method()))
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if callable(bundle):
        texts.append(json.dumps(bundle(), default=str))
    if isinstance(obj, BaseException):
        texts.append("".join(traceback.format_exception(type(obj), obj, obj.__traceback__)))
    return texts


def test_the_mask_shows_kind_and_last_four_at_most() -> None:
    """`sk-ant-…1234` for a key; short or foreign values give nothing away; URL passwords are masked."""
    from claude_force_nb._config import mask_secret, mask_url

    assert mask_secret(KEY) == "sk-ant-…1234"
    assert mask_secret("short") == "…" and mask_secret(None) == "none"
    assert mask_url("redis://:hunter2hunter2@cache:6379/0") == "redis://:…@cache:6379/0"


def test_no_object_shows_the_key(
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a recognisable key set, the reprs of every public object (session, settings, orchestrator,
    backend, cache, stats, results, records, events, errors), the frames and the DEBUG logs (the SDK's and
    httpx's included) never contain it; the session shows the masked form."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)  # the key goes to the loopback simulator only
    caplog.set_level(logging.DEBUG)
    notes: list[str] = []
    session = NotebookSession(
        settings=SessionSettings(cache_dir=str(tmp_path / "cache")), announce=notes.append
    )
    define_agent("analyst", "You analyse.")
    define_agent("writer", "You write.")
    orch = session.orchestrator()
    events: list[Any] = []
    orch.events.subscribe(events.append)
    answered = run_blocking(orch.execute_agent("analyst", "hello"))
    cached = run_blocking(orch.execute_agent("analyst", "hello"))
    batch = run_blocking(orch.execute_multiple([("analyst", "one"), ("writer", "two")]))
    estimate = run_blocking(orch.estimate([("analyst", "three"), ("writer", "four")]))
    job = run_blocking(orch.submit_batch([("analyst", "five"), ("writer", "six")]))
    batched = run_blocking(job.wait(poll_interval=0.01))
    with serve(api_key="the-only-key-this-server-takes") as strict:
        refused_by = AsyncAgentOrchestrator(base_url=strict.base_url, max_retries=0, enable_cache=False)
        refused = run_blocking(refused_by.execute_agent("analyst", "hello"))
        run_blocking(refused_by.aclose())
    assert answered.success and cached.cached and all(r.success for r in batch) and not refused.success
    assert orch.cache is not None
    objects: list[Any] = [
        session,
        session.settings,
        session.endpoint(),
        read_environment(),
        orch,
        orch.backend(),
        orch.cache,
        orch.cache.stats(),
        orch.budget,
        orch.runs,
        *orch.runs,
        answered,
        cached,
        *batch,
        estimate,
        job,
        *batched,
        *orch.batch_jobs(),
        refused,
        refused_by,
        *events,
        *[e for e in (refused.exception, getattr(refused.exception, "__cause__", None)) if e is not None],
    ]
    texts = [text for obj in objects for text in _shown(obj)]
    texts += [
        session.runs_frame().to_string(),
        estimate.to_frame().to_string(),
        job.to_frame().to_string(),
        orch.cache.stats().to_frame().to_string(),
        orch.cache.entries_frame().to_string(),
        claude_force_nb.attempts_frame(list(orch.runs)).to_string(),
        json.dumps([r.to_dict() for r in orch.runs], default=str),
        caplog.text,
        *notes,
        *capsys.readouterr(),
    ]
    run_blocking(orch.aclose())
    session.close()
    leaks = [text[:200] for text in texts if HIDDEN in text]
    assert leaks == []
    assert any("sk-ant-…1234" in text for text in texts)  # the session showed the masked form
    assert len(caplog.records) > 10  # the logs searched really were the DEBUG ones


def test_magic_cells_do_not_show_the_key(
    magics: Any, shell: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`%%agent`, `%agent runs`, `%agent config`, an error and a cell ending in `get_session()` display no
    key, nor the password of a Redis URL (a Redis that is not there: the cache's warning names it masked)."""
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    magics.cache_backend = f"redis://:pw-{HIDDEN}@127.0.0.1:1/0"  # nothing listens on port 1
    with caplog.at_level(logging.DEBUG), capture_output() as captured:
        shell.run_cell("%%agent code-reviewer -o review\nReview this.")
        shell.run_cell("%agent runs")
        shell.run_cell("%agent config")
        shell.run_cell("import claude_force_nb\nclaude_force_nb.get_session()")
        shell.run_cell("%%agent no-such-agent\nhello")
    outputs = [captured.stdout, captured.stderr, caplog.text]
    outputs += [json.dumps(o.data, default=str) for o in captured.outputs]
    assert shell.user_ns["review"].success
    assert not [text[:200] for text in outputs if HIDDEN in text]
    assert any("sk-ant-…1234" in text for text in outputs)  # the session's repr was displayed, masked
    assert "redis://:…@127.0.0.1:1/0" in caplog.text  # the dead cache was reported, its password masked


_NOTEBOOK_CELLS = [
    "import logging\nlogging.basicConfig(level=logging.DEBUG, force=True)  # every library's debug log",
    "%load_ext claude_force_nb",
    "import claude_force_nb\nclaude_force_nb.define_agent('analyst', 'You analyse.')",
    "%%agent analyst -o answer\nSummarise: the sky is blue.",
    "%%agent analyst\nSummarise: the sky is blue.",
    "answer",
    "%agent runs",
    "claude_force_nb.get_session()",
    "claude_force_nb.get_session().orchestrator()",
    "claude_force_nb.cache_stats_frame()",
    "%%agent no-such-agent\nhello",
]


@pytest.mark.slow
def test_a_saved_notebook_holds_no_key(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook run in a real kernel with the key set (calls going to the loopback simulator), DEBUG logs
    on and a cell ending in the session, saved to disk: the file holds no key."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in _NOTEBOOK_CELLS])
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,  # the last cell fails on purpose: its error output is searched too
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    saved = tmp_path / "run.ipynb"
    nbformat.write(notebook, saved)
    text = saved.read_text()
    assert "DEBUG" in text and "no-such-agent" in text  # the logs and the error are in the file
    assert HIDDEN not in text, [line.strip()[:160] for line in text.splitlines() if HIDDEN in line]
    assert "sk-ant-…1234" in json.dumps(json.loads(text), ensure_ascii=False)  # the session, masked
