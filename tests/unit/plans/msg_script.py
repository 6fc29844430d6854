"""Helpers of the plans' unit tier: a plan's messages as short lines, and a simulator run
that can throw into the plan."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bluesky import Msg
from bluesky.simulators import RunEngineSimulator


def name_of(msg: Msg) -> str | None:
    return getattr(msg.obj, "name", None)


def script(msgs: list[Msg]) -> list[str]:
    """The messages as short lines (``"set pot -1"``), runs of collect/sleep/wait while
    acquiring folded into one ``"acquire"``, so the order that matters reads at a glance."""
    lines: list[str] = []
    for msg in msgs:
        if msg.command in ("collect", "sleep") or (
            msg.command == "wait" and msg.kwargs.get("error_on_timeout") is False
        ):
            if not lines or lines[-1] != "acquire":
                lines.append("acquire")
            continue
        words = [msg.command]
        if msg.obj is not None:
            words.append(name_of(msg))
        words += [_word(a) for a in msg.args]
        if msg.command in ("create", "declare_stream"):
            words.append(msg.kwargs["name"])
        lines.append(" ".join(words))
    return lines


@dataclass
class Outcome:
    """What a plan did under :func:`simulate`: its messages, return value or error."""

    messages: list[Msg] = field(default_factory=list)
    value: Any = None
    error: BaseException | None = None


def simulate(
    sim: RunEngineSimulator,
    plan,
    throws: list[tuple[Callable[[Msg], bool], BaseException]] = (),
) -> Outcome:
    """``sim.simulate_plan``, keeping the messages when the plan raises, and throwing each
    exception of ``throws`` into the plan at the first message its predicate matches (after
    the previous throw), as the RunEngine throws a failed status or an abort into a plan.
    RunEngineSimulator answers messages but cannot throw."""
    pending = list(throws)
    out = Outcome()
    try:
        msg = plan.send(None)
        while True:
            out.messages.append(msg)
            if pending and pending[0][0](msg):
                _, exc = pending.pop(0)
                msg = plan.throw(exc)
                continue
            handler = next((h for h in sim.message_handlers if h.predicate(msg)), None)
            msg = plan.send(handler.runnable(msg) if handler else None)
    except StopIteration as stop:
        out.value = stop.value
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        out.error = exc
    assert not pending, f"never thrown: {pending}"
    return out


def _word(arg: Any) -> str:
    if isinstance(arg, (int, float)):
        return f"{arg:g}"
    return str(getattr(arg, "name", arg))
