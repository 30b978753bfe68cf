"""The `%%agent` cell magic and `%agent` line magic: a thin adapter over the session's orchestrator.

Options are declared here with `@magic_arguments`; everything else about the line and cell (capture
prefix, agent lists, `{{name}}` templates, `--inputs` rows, line sub-commands) is parsed by the pure
`_parse` module. User-input errors become IPython `UsageError` (one line, no traceback); a call that fails
raises `AgentRunFailed` at the end of the cell, after what finished has been shown, so "Run All" stops.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, get_type_hints

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Enum, Float, Int, TraitError, TraitType, Unicode, observe, validate
from traitlets.config import Configurable
from traitlets.traitlets import MetaHasTraits

from ._agents import build_user_turn
from ._calls import CallSpec
from ._coord import SharedBudget
from ._display import (
    PROVENANCE_KEY,
    AgentRun,
    StreamView,
    TableView,
    figure_png,
    format_cost,
    input_row_labels,
)
from ._estimate import estimate_calls
from ._events import EventKind, RunEvent
from ._exceptions import (
    AgentRunFailed,
    AgentRunInterrupted,
    ClaudeForceError,
    ClaudeForceWarning,
    ConfigError,
)
from ._limits import Budget
from ._loop import run_blocking, spawn
from ._orchestrator import AsyncAgentOrchestrator
from ._parse import (
    FORMATS,
    LINE_USAGE,
    MagicInputError,
    parse_agent_list,
    parse_dollars,
    parse_line,
    render_template,
    rows_from_inputs,
    split_capture,
    unquote,
)
from ._records import new_run_id
from ._request import ChatMessage
from ._results import AgentResult
from ._session import (
    SETTING_OPTIONS,
    NotebookSession,
    SessionSettings,
    SettingOption,
    get_session,
    validate_settings,
)
from ._style import small_note
from ._validate import shorten

__all__ = ["AgentMagics", "AgentRunFailed", "BackgroundRun", "load_ipython_extension"]


@dataclass
class _CellPlan:
    kind: str  # single | fanout | inputs | workflow
    calls: list[CallSpec]
    workflow: str | None
    inputs: list[dict[str, Any]] | None
    fmt: str
    chat: str | None
    quiet: bool
    stream: bool
    batch_id: str
    input_index: Any = None  # the --inputs DataFrame's index, kept on the result frame
    cell: int | None = None  # the execution count of the cell
    ended: dict[int, AgentResult] = field(default_factory=dict)  # fan-out/--inputs results as they end

    def run(self, results: Sequence[AgentResult], *, elapsed_s: float = math.nan) -> AgentRun:
        """The cell's result object for `results`."""
        return AgentRun(
            results,
            kind=self.kind,
            fmt=self.fmt,
            inputs=self.inputs,
            index=self.input_index,
            workflow=self.workflow,
            elapsed_s=elapsed_s,
            batch_id=self.batch_id,
            cell=self.cell,
        )


class BackgroundRun:
    """A `%%agent --bg` run in progress: `.done()`, `.cancel()`, `.result()`, or `await handle`."""

    def __init__(self, task: asyncio.Task[AgentRun], description: str) -> None:
        self._task = task
        self.description = description

    def done(self) -> bool:
        return self._task.done()

    def cancel(self) -> bool:
        """Cancel the calls still in flight; finished ones stay in the run log."""
        return self._task.cancel()

    def result(self) -> AgentRun:
        """The run's result, waiting for it if needed (raises AgentRunFailed if a call failed)."""
        if not self._task.done():
            run_blocking(_wait(self._task))
        return self._task.result()

    def __await__(self) -> Any:
        return self._task.__await__()

    def __repr__(self) -> str:
        if not self._task.done():
            state = "running"
        elif self._task.cancelled():
            state = "cancelled"
        elif self._task.exception() is not None:
            state = f"failed: {self._task.exception()}"
        else:
            state = f"done: {self._task.result().summary()}"
        return f"<BackgroundRun {self.description}: {state}>"


async def _wait(task: asyncio.Task[AgentRun]) -> None:
    await asyncio.wait([task])


def _option_trait(field_name: str, option: SettingOption) -> TraitType[Any, Any]:
    """The `%config` trait of one SessionSettings field: its type and default come from the dataclass."""
    default: Any = SessionSettings.__dataclass_fields__[field_name].default
    kind = _FIELD_TYPES[field_name]
    if option.choices:
        trait: TraitType[Any, Any] = Enum(list(option.choices), default, help=option.help)
    elif option.none_as is not None:
        trait = Float(option.to_option(default), help=f"{option.help} ({option.none_as:g}: none)")
    elif kind is bool:
        trait = Bool(default, help=option.help)
    elif kind is int:
        trait = Int(default, help=option.help)
    elif kind is float:
        trait = Float(default, help=option.help)
    else:
        trait = Unicode(default, help=option.help)
    return trait.tag(config=True)


_FIELD_TYPES = get_type_hints(SessionSettings)
_OPTIONS: dict[str, tuple[str, SettingOption]] = {
    option.name or field_name: (field_name, option) for field_name, option in SETTING_OPTIONS.items()
}
"""Option (trait) name -> (SessionSettings field, how it is offered)."""

# The options as traits, generated from SessionSettings so that each setting and its default are defined once
# (a class built by the traits metaclass, so traitlets registers them as configurable).
_SettingOptions: Any = MetaHasTraits(
    "_SettingOptions",
    (Configurable,),
    {name: _option_trait(field_name, option) for name, (field_name, option) in _OPTIONS.items()},
)


@magics_class
class AgentMagics(Magics, _SettingOptions):  # type: ignore[misc]
    """Run Claude agents from notebook cells. `%config AgentMagics` lists the options (the fields of
    `SessionSettings` listed in `SETTING_OPTIONS`).

    The session's settings are the source of truth: setting an option changes that one setting, and a
    change made elsewhere (the panel's concurrency, say) is copied back into the option, so the next
    `%config` never reverts it.
    """

    def __init__(self, shell: Any = None, session: NotebookSession | None = None, **kwargs: Any) -> None:
        # Set before traitlets applies **kwargs and the config, whose observers push settings to the session.
        self.session = session if session is not None else get_session()
        self._cell_batches: dict[int, str] = {}  # execution count -> the batch id of its calls
        super().__init__(shell=shell, **kwargs)
        # Options given to this instance (keywords, %config, ipython_config.py) win, even those equal to the
        # default (which raised no change event); the others take the session's current values.
        given = {*kwargs, *self.config.get(type(self).__name__, {})} & _OPTIONS.keys()
        try:
            self.session.update(**{_OPTIONS[name][0]: self._setting(name) for name in given})
        except ClaudeForceError as exc:
            raise UsageError(str(exc)) from None
        self._follow_session(frozenset(SETTING_OPTIONS))
        self.session.on_change(self._follow_session)

    def _setting(self, name: str) -> Any:
        return _OPTIONS[name][1].to_setting(getattr(self, name))

    def _follow_session(self, changed: frozenset[str]) -> None:
        """Copy changed session settings into their options (setting one back is a no-op for the session)."""
        settings = self.session.settings
        for name, (field_name, option) in _OPTIONS.items():
            if field_name in changed:
                value = option.to_option(getattr(settings, field_name))
                if getattr(self, name) != value:
                    setattr(self, name, value)

    @observe(*_OPTIONS)
    def _option_changed(self, change: Any) -> None:
        """`%config AgentMagics.<name> = value` changes that one setting, nothing else."""
        try:
            self.session.update(**{_OPTIONS[change["name"]][0]: self._setting(change["name"])})
        except ClaudeForceError as exc:
            raise UsageError(str(exc)) from None

    @validate(*_OPTIONS)
    def _check_option(self, proposal: Any) -> Any:
        """Refuse an unusable value at `%config` time, keeping the old one, with the reason."""
        field_name, option = _OPTIONS[proposal["trait"].name]
        value = proposal["value"]
        try:
            validate_settings(replace(self.session.settings, **{field_name: option.to_setting(value)}))
        except ConfigError as exc:
            raise TraitError(str(exc)) from None
        return value

    @property
    def _ns(self) -> dict[str, Any]:
        """The user's namespace."""
        assert self.shell is not None, "AgentMagics needs an IPython shell"
        ns: dict[str, Any] = self.shell.user_ns
        return ns

    # -- the magic -------------------------------------------------------------------------------------

    @no_var_expand
    @magic_arguments()
    @argument("agents", nargs="?", default=None, help="agent name, or several as a,b,c (fan-out)")
    @argument("-w", "--workflow", default=None, help="run a configured workflow step by step")
    @argument("-m", "--model", default=None, help="model id for this cell")
    @argument("--max-tokens", type=int, default=None, help="max_tokens for this cell")
    @argument("-t", "--temperature", type=float, default=None, help="temperature (0..1; older models only)")
    @argument("--system", default=None, help="replace the agent's system prompt for this cell")
    @argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    @argument("--refresh", action="store_true", help="skip the cache read, store the fresh answer")
    @argument("-o", "--output", default=None, help="store the result in this variable")
    @argument("--bg", action="store_true", help="run in the background and return a handle at once")
    @argument("-f", "--format", default=None, choices=FORMATS, help="how to show the answer")
    @argument("--chat", default=None, help="continue the conversation of this name across cells")
    @argument(
        "--inputs", default=None, help="one call per row of this DataFrame / list of dicts ({{column}})"
    )
    @argument("--budget", type=float, default=None, help="spending cap in dollars for this cell")
    @argument("--quiet", action="store_true", help="no live progress; show only the result")
    @argument(
        "--batch",
        action="store_true",
        help="send the --inputs rows through the Message Batches API (half price; --bg returns the job)",
    )
    @argument("--poll", type=float, default=None, help="with --batch: seconds between status checks")
    @argument("--estimate", action="store_true", help="preview the cost (free token counts); run nothing")
    @argument("--insert", action="store_true", help="with -f code: put the code into a new cell below")
    @argument("--error", action="store_true", help="append the last exception's traceback to the task")
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None) -> Any:
        """Run agents on the cell's text (the task), or manage the session with a line command.

        Cell magic:  %%agent NAME[,NAME...] [options]      (the cell body is the task)
                     %%agent --workflow NAME [options]
                     %%agent NAME --inputs df              (one call per row; {{column}} per row)
                     %%agent NAME --inputs df --batch      (the rows as a Message Batch, half price)
                     result << NAME ...  /  result= << NAME ...   (store / store and show)
        `{{name}}` in the task is replaced by the variable `name` (`{{In[3]}}`, `{{Out[3]}}`: an earlier
        cell's input / output); `{x}` and `$x` stay as typed. `%agent help` lists the options.

        Line magic:  %agent list | runs | models | stats | cache ... | plot ... | panel | config | budget
                     | chat | batches | batch ... | help
                     (`%agent help` explains each)
        """
        if cell is None:
            return self._line(line)
        capture = split_capture(line)
        try:
            args = parse_argstring(self.agent, capture.rest)
        except ValueError as exc:  # shlex: an unterminated quote or a trailing escape
            raise UsageError(f"cannot read the %%agent line {shorten(capture.rest)}: {exc}") from None
        except UsageError as exc:
            raise UsageError(suggest_options(str(exc), _option_strings(self.agent.parser))) from None
        if args.insert and (args.format or self.session.settings.default_format) != "code":
            raise UsageError("--insert goes with -f code (it puts the answer's code into a new cell)")
        if args.insert and args.bg:
            raise UsageError("--insert cannot go with --bg: the new cell is made when the answer is in")
        if args.error:
            cell = with_last_error(cell)
        for option in ("agents", "workflow", "model", "system", "output", "chat", "inputs"):
            setattr(args, option, unquote(getattr(args, option)))
        try:
            orch = self.session.orchestrator()
            plan = self._plan(args, cell, orch)
        except (MagicInputError, ClaudeForceError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        variable = capture.variable or args.output
        show = capture.show if capture.variable else True
        if args.estimate:
            return self._estimate(orch, plan, variable, show)
        if args.batch or args.poll is not None:
            return self._batch_cell(args, orch, plan, variable, show)
        coro = self._execute(orch, plan, background=args.bg)
        if args.bg:
            handle = BackgroundRun(spawn(coro), plan.calls[0].agent if plan.kind == "single" else plan.kind)
            if variable:
                self._ns[variable] = handle
            return handle
        try:
            run = run_blocking(coro)
        except AgentRunFailed as failure:
            if variable:  # what finished is kept where the user asked for it, then the cell stops
                self._ns[variable] = failure.run.to_frame() if plan.kind == "inputs" else failure.run
            raise
        except KeyboardInterrupt:
            # The calls in flight were cancelled (run_blocking waits for that); keep every row, the
            # unfinished ones marked cancelled, in the shape the cell promised, and say so in one line.
            interrupted = self._interrupted_run(plan)
            self._ns["_agent_last"] = interrupted
            if variable:
                self._ns[variable] = interrupted.to_frame() if plan.kind == "inputs" else interrupted
            raise AgentRunInterrupted(interrupted) from None
        if args.insert and self.shell is not None:
            self.shell.set_next_input(run.code, replace=False)
        return self._conclude(run, plan, variable, show)

    def _batch_cell(
        self, args: Any, orch: AsyncAgentOrchestrator, plan: _CellPlan, variable: str | None, show: bool
    ) -> Any:
        from ._batch_magic import run_batch_cell

        if not args.batch:
            raise UsageError("--poll goes with --batch")
        if plan.kind != "inputs":
            raise UsageError("--batch works with --inputs: `%%agent NAME --inputs df --batch`")
        if args.poll is not None and not args.poll > 0:
            raise UsageError(f"--poll must be a positive number of seconds, got {args.poll}")
        try:
            return run_batch_cell(
                self, orch, plan, variable=variable, show=show, background=args.bg, poll_interval=args.poll
            )
        except (ClaudeForceError, ValueError) as exc:
            if isinstance(exc, AgentRunFailed):
                raise
            raise UsageError(str(exc)) from None

    def _plan(self, args: Any, cell: str, orch: AsyncAgentOrchestrator) -> _CellPlan:
        settings = self.session.settings
        if args.workflow and args.agents:
            raise MagicInputError("give agent names or --workflow, not both")
        if not args.workflow and not args.agents:
            raise MagicInputError("which agent? write `%%agent NAME` (`%agent list` shows the agents)")
        if args.temperature is not None and not 0 <= args.temperature <= 1:
            raise MagicInputError(f"--temperature must be within 0..1, got {args.temperature}")
        if args.max_tokens is not None and args.max_tokens <= 0:
            raise MagicInputError(f"--max-tokens must be a positive integer, got {args.max_tokens}")
        if args.budget is not None and not args.budget >= 0:
            raise MagicInputError(f"--budget must be a non-negative amount in dollars, got {args.budget}")
        if not cell.strip():
            raise MagicInputError("the cell is empty: write the task in the cell body")
        cell = cell.rstrip("\n")  # the newline a cell body ends with is not part of the task
        agents = parse_agent_list(args.agents) if args.agents else ()
        for name in agents:
            orch.agent(name)
        if args.workflow:
            orch.config.workflow(args.workflow)
        kind = (
            "workflow"
            if args.workflow
            else "inputs"
            if args.inputs
            else "single"
            if len(agents) == 1
            else "fanout"
        )
        if args.chat and kind != "single":
            raise MagicInputError("--chat works with a single agent (not a fan-out, workflow or --inputs)")
        if args.inputs and len(agents) != 1:
            raise MagicInputError("--inputs works with a single agent")
        batch_id = new_run_id()
        template = CallSpec(
            agent=agents[0] if agents else "",
            task="",
            model=args.model,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            system=args.system,
            use_cache=not args.no_cache,
            refresh=args.refresh,
            batch_id=batch_id,
            budget=Budget(args.budget) if args.budget is not None else None,
        )
        namespace = self._ns

        def lookup(name: str) -> Any:
            return namespace[name]

        inputs: list[dict[str, Any]] | None = None
        input_index: Any = None
        limit = settings.max_template_chars
        if kind == "inputs":
            if args.inputs not in namespace:
                raise MagicInputError(f"--inputs {args.inputs}: no variable of that name")
            source = namespace[args.inputs]
            inputs = rows_from_inputs(source, name=args.inputs)
            input_index = source.index if hasattr(source, "columns") else None  # a DataFrame's row labels
            calls = [
                _with(
                    template,
                    task=render_template(cell, _row_lookup(row, lookup), max_chars=limit),
                    metadata={"row": i},
                )
                for i, row in enumerate(inputs)
            ]
        else:
            task = render_template(cell, lookup, max_chars=limit)
            if kind == "workflow":
                calls = [_with(template, task=task)]
            else:
                history = tuple(self.session.chats.get(args.chat, ())) if args.chat else ()
                calls = [_with(template, agent=name, task=task, history=history) for name in agents]
        return _CellPlan(
            kind=kind,
            calls=calls,
            workflow=args.workflow,
            inputs=inputs,
            fmt=args.format or settings.default_format,
            chat=args.chat,
            quiet=args.quiet,
            stream=settings.stream and not args.quiet,
            batch_id=batch_id,
            input_index=input_index,
            cell=self._remember_cell(batch_id),
        )

    def _remember_cell(self, batch_id: str) -> int | None:
        """Note which cell (execution count) ran `batch_id`, for `%agent runs N`; the count, if known."""
        # The running cell's input is already in the history, at its own number (In[N]); the shell's
        # execution_count may already point past it, depending on the IPython version.
        history = getattr(getattr(self.shell, "history_manager", None), "input_hist_parsed", None)
        if not history:
            return None
        count = len(history) - 1
        self._cell_batches[count] = batch_id
        return count

    async def _execute(
        self, orch: AsyncAgentOrchestrator, plan: _CellPlan, *, background: bool = False
    ) -> AgentRun:
        started = time.perf_counter()
        unsubscribe: Callable[[], None] | None = None
        stream_view: StreamView | None = None
        table: TableView | None = None
        if not plan.quiet:
            if plan.kind == "single" and plan.stream:
                stream_view = StreamView(label=plan.calls[0].agent, append=not background)
                unsubscribe = _subscribe(orch, plan.batch_id, stream_view.on_event, kinds=("retrying",))
            else:
                expected = len(orch.config.workflow(plan.workflow)) if plan.workflow else len(plan.calls)
                title = f"workflow {plan.workflow}" if plan.workflow else f"{len(plan.calls)} calls"
                labels = (
                    input_row_labels(plan.calls, plan.inputs, plan.input_index)
                    if plan.kind == "inputs" and plan.inputs is not None
                    else None
                )
                table = TableView(
                    expected=expected, title=title, hint="every row: _agent_last.to_frame()", labels=labels
                )
                unsubscribe = _subscribe(orch, plan.batch_id, table.on_event)
        try:
            results: Sequence[AgentResult]
            if plan.kind == "workflow":
                assert plan.workflow is not None
                workflow = await orch.run_workflow(plan.workflow, plan.calls[0].task, template=plan.calls[0])
                results = list(workflow)
            elif plan.kind == "single":
                on_text = stream_view.on_text if stream_view is not None else None
                results = [await orch.run_call(plan.calls[0], on_text=on_text)]
            else:
                results = await orch.execute_multiple(plan.calls, on_result=plan.ended.__setitem__)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            if table is not None:
                table.finish()
        run = plan.run(results, elapsed_s=time.perf_counter() - started)
        if plan.chat and run.success:
            call = plan.calls[0]
            history = self.session.chats.setdefault(plan.chat, [])
            history += [ChatMessage("user", build_user_turn(call.task)), ChatMessage("assistant", run.text)]
        if stream_view is not None:
            stream_view.finish(run)
        elif table is not None:
            display(_SummaryLine(run.summary(), run.provenance()))
        if not run.success:
            self._ns["_agent_last"] = run
            raise AgentRunFailed(run)
        return run

    def _estimate(
        self, orch: AsyncAgentOrchestrator, plan: _CellPlan, variable: str | None, show: bool
    ) -> Any:
        """`--estimate`: the cell's calls previewed (count_tokens, cache hits, cost range), none run."""
        calls, notes = plan.calls, []
        if plan.workflow:
            steps = orch.config.workflow(plan.workflow)
            calls = [replace(plan.calls[0], agent=name, workflow_step=i) for i, name in enumerate(steps)]
            notes.append(
                "Workflow steps after the first also receive the previous step's answer, unknown "
                "before running: their input is counted without it."
            )
        preview = run_blocking(estimate_calls(orch, calls, notes=notes))
        if variable:
            self._ns[variable] = preview
        return preview if show else None

    def _conclude(self, run: AgentRun, plan: _CellPlan, variable: str | None, show: bool) -> Any:
        value: Any = run.to_frame() if plan.kind == "inputs" else run
        self._ns["_agent_last"] = run
        if variable:
            self._ns[variable] = value
        already_shown = plan.kind == "single" and plan.stream
        if not show or already_shown:
            return None
        return value

    def _interrupted_run(self, plan: _CellPlan) -> AgentRun:
        """The cell's results after an interrupt: every call in order, the unfinished ones `cancelled`."""
        if plan.kind in ("fanout", "inputs"):
            results = [plan.ended.get(i) or _not_started(call) for i, call in enumerate(plan.calls)]
        else:  # one call, or a workflow's steps one after another: the batch's records are in order
            results = [
                AgentResult.from_record(r) for r in self.session.run_log if r.batch_id == plan.batch_id
            ]
        return plan.run(results)

    # -- line commands ---------------------------------------------------------------------------------

    def _line(self, line: str) -> Any:
        try:
            command = parse_line(line)
            handler = getattr(self, f"_cmd_{command.name}")
            result = handler(*command.args)
            if result is None or not hasattr(result, "columns"):
                return result
            from ._frames import math_safe

            return math_safe(result)  # a table of tasks or answers with `$` amounts is never typeset
        except (MagicInputError, ClaudeForceError, OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    def _cmd_help(self) -> None:
        options = "\n".join(
            f"  {', '.join(action.option_strings):<22} {action.help}"
            for action in self.agent.parser._actions
            if action.option_strings and action.help and "-h" not in action.option_strings
        )
        print(f"{CELL_USAGE}\n\nCell options:\n{options}\n\n{CELL_EXAMPLES}\n\nLine commands:\n{LINE_USAGE}")

    def _cmd_list(self) -> Any:
        import pandas as pd

        from ._frames import math_safe

        orch = self.session.orchestrator()
        agents = pd.DataFrame(
            [
                {
                    "agent": spec.name,
                    "source": spec.source,
                    "contract": spec.contract_file or ("inline" if spec.contract else ""),
                    "domains": ", ".join(spec.domains),
                    "priority": spec.priority,
                    "model": spec.model or f"(default: {orch.model})",
                    "max_tokens": spec.max_tokens or orch.max_tokens,
                }
                for spec in orch.agents.values()
            ],
            columns=["agent", "source", "contract", "domains", "priority", "model", "max_tokens"],
        )
        workflows = pd.DataFrame(
            [{"workflow": name, "steps": " → ".join(steps)} for name, steps in orch.workflows.items()],
            columns=["workflow", "steps"],
        )
        with pd.option_context("display.max_colwidth", None):  # every step of a workflow, never "…"
            display(math_safe(agents))
            if len(workflows):
                display(math_safe(workflows))
        return None

    def _cmd_runs(self, which: str | None = None) -> Any:
        """The run log; with a cell's number (`%agent runs 12`), `last`, or a batch id, that cell's rows."""
        frame = self.session.runs_frame()
        if which is None:
            return frame
        if which == "last":
            last = self._ns.get("_agent_last")
            batch_id = getattr(last, "batch_id", None)
        elif which.isdigit():
            batch_id = self._cell_batches.get(int(which))
            if batch_id is None:
                raise MagicInputError(
                    f"%agent runs {which}: cell {which} ran no %%agent calls in this session"
                )
        else:
            batch_id = which
        rows = frame[frame["batch_id"] == batch_id]
        if rows.empty:
            raise MagicInputError(f"%agent runs {which}: no calls of that cell in the run log")
        return rows

    def _cmd_models(self) -> Any:
        return self.session.orchestrator().rate_card.to_frame()

    def _cache(self) -> Any:
        cache = self.session.orchestrator().cache
        if cache is None:
            raise MagicInputError("the response cache is off (%config AgentMagics.cache = True)")
        return cache

    def _cmd_stats(self) -> Any:
        return self._cache().stats().to_frame()

    def _cmd_cache(self, action: str, argument: str | None = None) -> Any:
        cache = self._cache()
        if action == "info":
            return cache.entries_frame(tasks=True)
        if action == "clear":
            before = cache.stats().entries
            cache.clear()
            print(f"Cleared {before} cached answer(s); other files in the cache folder were not touched.")
            return None
        if action == "export":
            count = cache.export_bundle(argument)
            print(f"Wrote {count} cached answer(s) to {argument}.")
            return None
        if action == "import":
            count = cache.import_bundle(argument)
            print(f"Imported {count} cached answer(s) from {argument}.")
            return None
        self.session.update(replay=argument == "on")  # a session setting: it survives orchestrator rebuilds
        print(
            "Replay mode on: answers come only from the cache; a miss is an error and nothing is sent."
            if cache.replay
            else "Replay mode off."
        )
        return None

    def _cmd_plot(self, which: str, theme: str = "auto") -> None:
        from IPython.display import Image

        from . import _plots

        # A bare Figure, shown as a PNG (see chart_figure). Call plot_*() yourself for an Axes to adjust.
        figure = _plots.chart_figure((9, 5), theme)  # type: ignore[arg-type]
        ax = figure.subplots()
        frame = self.session.runs_frame()
        style: Any = {"ax": ax, "theme": theme}
        if which == "latency":
            _plots.plot_latency(frame, **style)
        elif which == "cost":
            _plots.plot_cost(frame, **style)
        elif which == "cache":
            cache = self.session.orchestrator().cache
            _plots.plot_cache(frame, stats=cache.stats() if cache is not None else None, **style)
        else:
            _plots.plot_timeline(frame, attempts=_plots.attempts_frame(self.session.run_log), **style)
        display(Image(data=figure_png(figure), format="png"))

    def _cmd_panel(self) -> Any:
        from ._panel import AgentPanel

        return AgentPanel(self.session)

    def _cmd_config(self) -> None:
        settings = self.session.settings
        print(self.session.mode_note()[1])
        for name, value in settings.shown().items():  # masked: a Redis URL may carry a password
            print(f"  {name:<20} {value!r}")
        print("Change with %config AgentMagics.<name> = value")

    def _cmd_budget(self, amount: str | None = None) -> None:
        if amount is not None:
            limit = None if amount.lower() == "off" else parse_dollars(amount)
            self.budget_usd = -1.0 if limit is None else limit
        budget = self.session.budget
        limit_text = "no limit" if budget.limit_usd is None else format_cost(budget.limit_usd)
        if isinstance(budget, SharedBudget):
            print(shared_budget_lines(run_blocking(budget.breakdown()), limit_text))
            return
        print(
            f"Budget: {limit_text}; spent {format_cost(budget.spent_usd)}, "
            f"{format_cost(budget.reserved_usd)} held by calls in flight"
            + (f", {budget.waiting} call(s) waiting for them to settle" if budget.waiting else "")
        )

    def _cmd_batches(self) -> Any:
        from ._batch_magic import jobs_frame

        return jobs_frame(self.session.orchestrator())

    def _cmd_batch(self, action: str, batch_id: str) -> Any:
        from ._batch_magic import batch_command

        return batch_command(self, self.session.orchestrator(), action, batch_id)

    def _cmd_chat(self, action: str, name: str) -> None:
        existed = self.session.chats.pop(name, None) is not None
        print(f"Chat {name!r} {'reset' if existed else 'was not active'}.")


class _SummaryLine:
    """The line under a live table; its output carries the run's provenance like the result does."""

    def __init__(self, text: str, provenance: dict[str, Any] | None = None) -> None:
        self.text = text
        self.provenance = provenance

    def _repr_markdown_(self) -> str | tuple[str, dict[str, Any]]:
        if self.provenance is None:
            return small_note(self.text)
        return small_note(self.text), {PROVENANCE_KEY: self.provenance}

    def __repr__(self) -> str:
        return self.text


def _not_started(call: CallSpec) -> AgentResult:
    return AgentResult(
        agent_name=call.agent,
        success=False,
        errors=["cancelled before it started"],
        metadata=dict(call.metadata),
        status="cancelled",
    )


def _with(template: CallSpec, **changes: Any) -> CallSpec:
    from dataclasses import replace

    return replace(template, **changes)


def _row_lookup(row: dict[str, Any], fallback: Callable[[str], Any]) -> Callable[[str], Any]:
    def lookup(name: str) -> Any:
        return row[name] if name in row else fallback(name)

    return lookup


def _subscribe(
    orch: AsyncAgentOrchestrator,
    batch_id: str,
    handler: Callable[[RunEvent], None],
    *,
    kinds: Iterable[EventKind] | None = None,
) -> Callable[[], None]:
    def on_event(event: RunEvent) -> None:
        if event.record.batch_id == batch_id:
            handler(event)

    return orch.events.subscribe(on_event, kinds=kinds)


CELL_USAGE = """\
%%agent NAME[,NAME...] [options]     the cell body is the task; several names run concurrently (fan-out)
%%agent --workflow NAME [options]    a configured workflow, step by step
%%agent NAME --inputs df [options]   one call per row of a DataFrame / list of dicts
result << NAME ...                   store the result in `result` (`result= << NAME` stores and shows)
In the task, {{name}} is the variable `name` ({{df.shape}}, {{In[3]}}, {{Out[3]}} work too)."""

CELL_EXAMPLES = """\
Examples:
  %%agent code-reviewer                  review what the cell says
  %%agent code-reviewer,security-auditor -f json --quiet
  %%agent fixer -f code --insert         the answer's code lands in a new cell below
  %%agent bug-investigator --error       the last exception's traceback is added to the task
  %%agent summarizer --inputs df         {{column}} per row; the result is a DataFrame"""

_MAX_TRACEBACK_CHARS = 6000


def with_last_error(task: str) -> str:
    """The task with the session's last exception (type, message, traceback) appended, as `%ai error`
    does; UsageError if nothing has failed yet. Long tracebacks keep their end, where the error is."""
    import traceback

    error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if error is None:
        raise UsageError("--error: no exception has been raised in this session yet")
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).strip()
    if len(text) > _MAX_TRACEBACK_CHARS:
        text = "…" + text[-_MAX_TRACEBACK_CHARS:]
    task = task.strip() or "Explain this error and how to fix it."
    return f"{task}\n\nThe last error in the notebook:\n```\n{text}\n```"


def _option_strings(parser: Any) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def suggest_options(message: str, options: Sequence[str]) -> str:
    """argparse's "unrecognized arguments: --tempreture 0.2" with the closest valid options named."""
    import difflib

    if "unrecognized arguments:" not in message:
        return message
    unknown = [w for w in message.split("unrecognized arguments:", 1)[1].split() if w.startswith("-")]
    hints = []
    for word in unknown:
        close = difflib.get_close_matches(word.split("=", 1)[0], options, n=3, cutoff=0.7)
        hints.append(f"{word}: did you mean {' or '.join(close)}?" if close else f"{word}: no such option")
    return f"{message}\n" + "\n".join(hints) + "\n(`%agent help` lists the options)" if hints else message


def show_warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
    *,
    fallback: Callable[..., None] | None = None,
) -> None:
    """`warnings.showwarning` for the notebook: the package's own warnings as one line on stderr,
    "claude_force_nb: ..." (no internal file name and source line); every other warning as before."""
    if issubclass(category, ClaudeForceWarning):
        print(f"claude_force_nb: {message}", file=file if file is not None else sys.stderr)
        return
    (fallback or _default_showwarning)(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _install_warning_format() -> None:
    previous = warnings.showwarning
    if getattr(previous, "__wrapped_by_cfnb__", False):
        return

    def show(*args: Any, **kwargs: Any) -> None:
        show_warning_line(*args, **kwargs, fallback=previous)

    show.__wrapped_by_cfnb__ = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext claude_force_nb`: register `%agent`/`%%agent` and the alias `%claude_agent`."""
    magics = AgentMagics(shell=ipython)
    ipython.register_magics(magics)
    _install_warning_format()
    ipython.register_magic_function(magics.agent, "line_cell", "claude_agent")
    magics.session.announce_mode()


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext claude_force_nb`: the magics stay registered (IPython cannot remove them), the session
    is closed."""
    get_session().close()


def shared_budget_lines(ledger: dict[str, Any], limit_text: str) -> str:
    """`%agent budget` for a shared budget: the scope's totals, then who spent what."""
    lines = [
        f"Shared budget (scope {ledger['scope']!r}): {limit_text}; spent {format_cost(ledger['spent_usd'])}, "
        f"{format_cost(ledger['held_usd'])} held by calls in flight, all members"
    ]
    for owner, figures in sorted(ledger["owners"].items(), key=lambda item: -item[1]["spent"]):
        lapsed = figures.get("lapsed", 0.0)
        note = f" (of which {format_cost(lapsed)} from holds whose owner stopped)" if lapsed > 0 else ""
        lines.append(
            f"  {owner:<24} spent {format_cost(figures['spent'])}, holds {format_cost(figures['held'])}{note}"
        )
    return "\n".join(lines)
