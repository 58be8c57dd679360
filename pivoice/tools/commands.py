"""Command tools ([[tools.commands]]): each runs one fixed program the owner named in the config.

Who can make the speaker run what: the owner writes the program's absolute path and its argument list;
the model can only fill the declared parameters, whose values are checked against their schema (type,
enum, length, range; a string may not start with "-" unless the parameter allows it) and then put into
the argument list as plain strings, one element each, never through a shell: `; rm -rf /`, `$(...)` or a
newline are just characters of an argument. The program gets no standard input, a minimal environment
(PATH and LANG: no API key in it), the service's user and sandbox (so it can read and write what the
service can: choose programs accordingly), its own process group (killed whole at the timeout), and at
most `max_output_bytes` of what it prints goes back to the model.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from typing import Any

from ..config import CommandSettings
from .registry import Tool

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def tools(commands: list[CommandSettings]) -> list[Tool]:
    return [Tool(c.name, c.description, _handler(c), parameters=_schema(c), timeout=c.timeout_seconds + 2.0,
                 blocking=c.blocking) for c in commands]


def _schema(c: CommandSettings) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, p in c.parameters.items():
        prop: dict[str, Any] = {"type": p.type}
        if p.description:
            prop["description"] = p.description
        if p.type == "string":
            prop["maxLength"] = p.max_length
            if p.enum:
                prop["enum"] = list(p.enum)
        for key in ("minimum", "maximum"):
            if getattr(p, key) is not None:
                prop[key] = getattr(p, key)
        props[name] = prop
    return {"type": "object", "properties": props, "required": list(c.required)}


def argv(c: CommandSettings, args: dict[str, Any]) -> list[str]:
    """The program's argument list with the (already checked) values in place: an element that is only a
    placeholder for a parameter not given is left out; a placeholder inside an element becomes ""."""
    out = [c.argv[0]]
    for element in c.argv[1:]:
        whole = _PLACEHOLDER.fullmatch(element)
        if whole and whole.group(1) not in args:
            continue
        out.append(_PLACEHOLDER.sub(lambda m: _text(args.get(m.group(1), "")), element))
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _handler(c: CommandSettings):
    async def handler(args: dict[str, Any]) -> dict[str, Any]:
        for name, value in args.items():
            p = c.parameters[name]
            if isinstance(value, str) and value.startswith("-") and not p.allow_leading_dash:
                return {"error": f"'{name}' may not start with '-' (the program could take it for an option)"}
        cmd = argv(c, args)
        if any("\0" in a for a in cmd):
            return {"error": "an argument holds a NUL character, which no program can be given"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=ENV, cwd="/", start_new_session=True)
        except OSError as e:  # not there, not executable, an argument list too long (E2BIG)
            return {"error": f"{c.name} could not be started: {e.strerror or e}"}
        try:
            out, err, cut = await asyncio.wait_for(_read(proc, c.max_output_bytes), c.timeout_seconds)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            return {"error": f"{c.name} did not finish within {c.timeout_seconds:g} s and was stopped"}
        except asyncio.CancelledError:
            _kill(proc)
            raise
        result: dict[str, Any] = {"exit_code": proc.returncode, "output": out.decode("utf-8", "replace")}
        if cut:
            result["note"] = f"the output was cut at {c.max_output_bytes} bytes"
        if proc.returncode != 0 and err:
            result["errors"] = err[-500:].decode("utf-8", "replace")
        return result

    return handler


async def _read(proc: asyncio.subprocess.Process, cap: int) -> tuple[bytes, bytes, bool]:
    """stdout up to `cap` bytes (the rest is read and dropped, so the program is not blocked writing), the
    end of stderr, and whether stdout was cut; once the program has exited."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err, cut = bytearray(), bytearray(), False

    async def drain_out() -> None:
        nonlocal cut
        while chunk := await proc.stdout.read(65536):  # type: ignore[union-attr]
            room = cap - len(out)
            if len(chunk) > room:
                cut = True
            out.extend(chunk[:max(room, 0)])

    async def drain_err() -> None:
        while chunk := await proc.stderr.read(65536):  # type: ignore[union-attr]
            err.extend(chunk)
            del err[:-4096]

    await asyncio.gather(drain_out(), drain_err())
    await proc.wait()
    return bytes(out), bytes(err), cut


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the program and whatever it started
    except ProcessLookupError:
        pass
