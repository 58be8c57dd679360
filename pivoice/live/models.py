"""What each Live API model accepts, so a setting the chosen model cannot take is a config error at start
(naming the key), not a session the API refuses at the first wake word.

Checked 2026-12-01 against the model pages and the Live API's migration notes (docs/live-api.md):

- `gemini-3.8-live` (stable; the default) and `gemini-3.8-live-extended-thinking`: proactive audio is
  always on (sending `proactive_audio: false` is an error); affective dialog is gone; no thinking settings;
  function calls NON_BLOCKING by default; initial history in client content (`history_config`).
- `gemini-3.1-flash-live-preview` (legacy preview): `thinking_level`; no proactive audio or affective
  dialog options; initial history in client content.
- `gemini-2.5-flash-native-audio-preview-*` (previews): proactive audio and affective dialog as options;
  no thinking level. History is given in the system instruction (no `history_config` documented).

A model not in the table (a newer one, a tuned one) gets the settings as written, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "gemini-3.8-live"


@dataclass(frozen=True)
class Model:
    family: str  # "3.8", "3.1" or "2.5"
    proactive_audio: str  # "always" (on, cannot be turned off), "option" or "no"
    affective_dialog: bool  # `enable_affective_dialog` is accepted
    thinking_level: bool  # `thinking_config.thinking_level` is accepted
    history_in_client_content: bool  # the setup's `history_config` + initial turns in client content


_3_8 = Model("3.8", proactive_audio="always", affective_dialog=False, thinking_level=False,
             history_in_client_content=True)
_3_1 = Model("3.1", proactive_audio="no", affective_dialog=False, thinking_level=True,
             history_in_client_content=True)
_2_5 = Model("2.5", proactive_audio="option", affective_dialog=True, thinking_level=False,
             history_in_client_content=False)

KNOWN: dict[str, Model] = {
    "gemini-3.8-live": _3_8,
    "gemini-3.8-live-extended-thinking": _3_8,
    "gemini-3.1-flash-live-preview": _3_1,
    "gemini-2.5-flash-native-audio-preview-12-2025": _2_5,
    "gemini-2.5-flash-native-audio-preview-09-2025": _2_5,
}


def lookup(name: str) -> Model | None:
    """The model's entry ("models/" prefix or not), or None for a model pivoice does not know."""
    return KNOWN.get(name.removeprefix("models/"))


def unsupported(name: str, proactive_audio: bool | None, affective_dialog: bool | None,
                thinking_level: str) -> list[str]:
    """The settings that `name` does not accept, each as "key: why (what to do)"; empty when all fit."""
    m = lookup(name)
    if m is None:
        return []
    wrong = []
    if proactive_audio is False and m.proactive_audio == "always":
        wrong.append(f"live.proactive_audio: {name} always has proactive audio on and refuses a session that "
                     f"turns it off (remove the key)")
    elif proactive_audio is not None and m.proactive_audio == "no":
        wrong.append(f"live.proactive_audio: {name} has no proactive audio option (remove the key)")
    if affective_dialog is not None and not m.affective_dialog:
        wrong.append(f"live.affective_dialog: {name} has no affective dialog (remove the key; the "
                     f"gemini-2.5-flash-native-audio models have it)")
    if thinking_level and not m.thinking_level:
        wrong.append(f"live.thinking_level: {name} takes no thinking settings (remove the key; "
                     f"gemini-3.1-flash-live-preview has them)")
    return wrong
