"""A tool the model may call, and what the Live API is told of it.

Behaviour: a quick tool is BLOCKING (the model waits for its result, which the runner always sends, an
error at the latest at its timeout: a BLOCKING call left unanswered leaves the session silent, as other
clients found). One that may take a while is NON_BLOCKING, the model talking on meanwhile, and its result
carries a scheduling: WHEN_IDLE (said when the model is idle), SILENT (only known) or INTERRUPT (said at
once). `gemini-3.8-live` runs tools NON_BLOCKING when the declaration does not say.

The arguments the model sends are checked against the tool's schema before its handler runs (the subset of
JSON schema the tools use: an object of string, integer, number and boolean properties, `required`, `enum`,
`minimum`/`maximum`, `maxLength`, `pattern`); a call that does not fit gets an error result naming what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    handler: Handler = field(repr=False)
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout: float = 10.0  # seconds; then the call's result is an error
    blocking: bool = True
    scheduling: Literal["WHEN_IDLE", "SILENT", "INTERRUPT"] = "WHEN_IDLE"  # NON_BLOCKING results only

    def check(self, args: Any) -> str | None:
        """What is wrong with `args` for this tool, or None."""
        if not isinstance(args, dict):
            return "the arguments are not an object"
        props: dict[str, dict] = self.parameters.get("properties", {})
        for name in self.parameters.get("required", []):
            if name not in args:
                return f"'{name}' is missing"
        for name, value in args.items():
            schema = props.get(name)
            if schema is None:
                return f"'{name}' is not a parameter of {self.name}"
            kinds = _TYPES.get(schema.get("type", ""), ())
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                return f"'{name}' must be of type {schema.get('type')}"
            if "enum" in schema and value not in schema["enum"]:
                return f"'{name}' must be one of {', '.join(map(str, schema['enum']))}"
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if "minimum" in schema and value < schema["minimum"]:
                    return f"'{name}' must be at least {schema['minimum']}"
                if "maximum" in schema and value > schema["maximum"]:
                    return f"'{name}' must be at most {schema['maximum']}"
            if isinstance(value, str) and len(value) > schema.get("maxLength", 1000):
                return f"'{name}' is longer than {schema.get('maxLength', 1000)} characters"
            if isinstance(value, str) and "pattern" in schema and not re.fullmatch(schema["pattern"], value):
                return f"'{name}' has characters it may not have"
        return None


def declarations(tools: list[Tool], google_search: bool = False) -> list:
    """The setup's `tools`: the function declarations (with their behaviour), and Google Search."""
    from google.genai import types

    out = []
    if tools:
        out.append(types.Tool(function_declarations=[
            types.FunctionDeclaration(
                name=t.name, description=t.description, parameters_json_schema=t.parameters,
                behavior=types.Behavior.BLOCKING if t.blocking else types.Behavior.NON_BLOCKING)
            for t in tools]))
    if google_search:
        out.append(types.Tool(google_search=types.GoogleSearch()))
    return out
