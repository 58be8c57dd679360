"""Where pivoice keeps what must outlive a restart (timers, the state of GPIO outputs): the service's
StateDirectory= (/var/lib/pivoice, given as $STATE_DIRECTORY), else $XDG_STATE_HOME/pivoice or
~/.local/state/pivoice for a foreground run. Files are written atomically: a power cut leaves the old
version or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def state_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = Path(env.get("XDG_STATE_HOME") or Path(env.get("HOME", "/nonexistent")) / ".local" / "state")
    return base / "pivoice"


def load_json(path: Path) -> Any:
    """What `path` holds, or None when it is not there or not JSON (a damaged file is started over)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_json(path: Path, data: Any) -> None:
    """Write atomically (temporary file, fsync, rename, fsync of the directory). Raises OSError."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
