"""pivoice: a voice assistant daemon for the Raspberry Pi (wake word -> Gemini Live API -> speaker)."""

__version__ = "0.1.0"
