"""Tools the model may call during a conversation (the Live API's function calling).

    registry.py   a Tool: name, description, JSON-schema parameters, async handler, timeout, behaviour;
                  the declarations sent in the setup; the argument check
    runner.py     runs one conversation's calls concurrently, answers each with its id (a result or an
                  error), cancels what the server cancels; one journal line per call
    builtin.py    the tools that need nothing but the Pi: the date and time, ending the conversation,
                  muting the microphone (each switchable in [tools])
"""

from .registry import Tool, declarations
from .runner import ToolRunner

__all__ = ["Tool", "ToolRunner", "declarations"]
