"""The configuration file -> Settings: reading it (a regular, UTF-8 TOML file) and validating it with the
models in config.py. Every error names the file, the key and what to do, never a traceback.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .config import DEFAULT_PATH, Settings
from .errors import ConfigError


def _describe(err: ErrorDetails, example: str) -> str:
    key = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if not key:  # a check across keys: its message names them
        return err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"unknown key '{key}' (a typo? every key is listed in {example})"
    if kind == "missing":
        return f"'{key}' is missing"
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) else ""
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith(f"{key}."):  # a section's check across its keys: its message names them
        return msg
    return f"'{key}': {msg}{shown}"


S = TypeVar("S", bound=BaseModel)


def parse(data: dict, source: str) -> Settings:
    return parse_as(Settings, data, source)


def parse_as(schema: type[S], data: dict, source: str) -> S:
    """`schema` (the speaker's Settings, the key service's) from a file's data; a ConfigError naming the key."""
    example = getattr(schema, "EXAMPLE", "config/pivoice.toml")
    try:
        return schema.model_validate({**data, "source": source})
    except ValidationError as e:
        problems = [_describe(err, example) for err in e.errors(include_url=False)]
        first = problems[0]
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(f"config error in {source}: {first}{more}. Fix it and start again.") from None


def load(path: Path | None) -> Settings:
    """Settings from `path`; the built-in defaults when `path` is None and the default file is absent."""
    return load_as(Settings, path, DEFAULT_PATH)


def load_as(schema: type[S], path: Path | None, default: Path) -> S:
    """`schema` from `path`; its defaults when `path` is None and `default` is absent."""
    explicit = path is not None
    path = path or default
    try:
        raw = _read_regular_file(path)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"config file {path} does not exist. Copy {getattr(schema, 'EXAMPLE', 'config/pivoice.toml')} "
                f"there, or leave out --config to use {default} (or the built-in defaults when that is absent)."
            ) from None
        return schema()
    except PermissionError:
        raise ConfigError(
            f"cannot read config file {path}: permission denied. Make it readable by the pivoice user."
        ) from None
    except OSError as e:  # a symlink loop, a path through a file, a name too long...
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}. "
                          f"Give the path of a .toml file.") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}. Fix that line.") from None
    return parse_as(schema, data, str(path))


def _read_regular_file(path: Path) -> bytes:
    """The file's bytes; a ConfigError for anything but a regular file (a FIFO or a device would block
    the read, or never end). Opened without blocking, then checked, so nothing can be swapped in between."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"config path {path} is a directory; give the path of a .toml file.")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"config path {path} is not a regular file (a FIFO, socket or device); "
                              f"give the path of a .toml file.")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
