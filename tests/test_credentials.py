"""The API key as people hand it over: from editors that add a byte-order mark, from copy-paste that adds
invisible characters, from a shell line with a stray space. What is not part of a key is taken off; what
cannot be a key is refused by `check` already, with a line naming where it came from."""

from __future__ import annotations

import re
import signal

import pytest
from harness import TEST_KEY, read_wav, silence

from pivoice.credentials import find_api_key
from pivoice.errors import ConfigError

CONFIG = """
[audio]
input_device = "{mic}"
output_device = "spk_file"
"""


@pytest.mark.parametrize("wrapped", [
    "\ufeff" + TEST_KEY + "\n",  # Notepad's UTF-8 with BOM
    "\ufeff" + TEST_KEY + "\r\n",
    "\u200b" + TEST_KEY + "\u200b\n",  # zero-width spaces from a web page
    "  " + TEST_KEY + "\u00a0\n",  # a no-break space
])
def test_invisible_characters_around_a_key_are_taken_off(wrapped, tmp_path):
    path = tmp_path / "api-key"
    path.write_text(wrapped, encoding="utf-8")
    assert find_api_key(str(path)).value == TEST_KEY
    assert find_api_key("", {"GEMINI_API_KEY": wrapped}).value == TEST_KEY


@pytest.mark.parametrize("value,message", [
    ("abc def", "the environment variable GEMINI_API_KEY holds more than one word"),
    ("AIza\u00e9tait", r"the environment variable GEMINI_API_KEY holds a character that cannot be part of an API "
                       r"key \(U\+00E9 at position 5\)"),
    ("AIza\x07bell", r"holds a character that cannot be part of an API key \(U\+0007 at position 5\)"),
])
def test_check_refuses_what_cannot_be_a_key(value, message, run_daemon, tmp_path):
    (tmp_path / "mic.raw").write_bytes(b"\0" * 3200)  # the microphone is fine: only the key is not
    d = run_daemon(CONFIG.format(mic="mic_file"), key=value, args=["check"])
    assert d.wait_exit() == 78, d.output
    errors = [line for line in d.lines if "ERROR" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), d.output
    assert value not in d.output and "Traceback" not in d.output


def test_a_key_of_nothing_but_invisible_characters_is_refused(tmp_path):
    path = tmp_path / "api-key"
    path.write_text("\ufeff\u200b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"live.api_key_file {path} is empty"):
        find_api_key(str(path))


def test_a_key_file_with_a_bom_gets_conversations(soundcard, standin, run_daemon, tmp_path):
    """The key file as Windows Notepad saves it: `check` and `run` both work, and the Live API gets the key
    itself, not the byte-order mark (which failed every conversation with an invalid header)."""
    key_file = tmp_path / "api-key"
    key_file.write_bytes(b"\xef\xbb\xbf" + TEST_KEY.encode() + b"\r\n")
    cfg = CONFIG.format(mic="pv_mic") + f'[live]\napi_key_file = "{key_file}"\n'
    assert run_daemon(cfg, key=None, args=["check"]).wait_exit() == 0
    d = run_daemon(cfg, key=None, extra_env=standin.env())
    d.wait_for("ready: listening")
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.5))
    d.wait_for("session open in", timeout=15)
    assert standin.sessions[0].headers["x-goog-api-key"] == TEST_KEY
    assert d.stop()[0] == 0
    assert "InvalidHeader" not in d.output


def test_reload_says_a_new_credential_needs_a_restart(run_daemon, notify_socket, tmp_path):
    """systemd copies a LoadCredential= key when the service starts and never again (252, 257): a reload
    cannot bring a new one, so it must not claim to have; it says what works."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "gemini-api-key").write_text(TEST_KEY + "\n")
    (tmp_path / "mic.raw").write_bytes(silence(2.0))
    d = run_daemon(CONFIG.format(mic="mic_file"), key=None,
                   extra_env={"CREDENTIALS_DIRECTORY": str(creds), "NOTIFY_SOCKET": str(notify_socket.path)})
    d.wait_for("ready: listening")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(r"WARNING pivoice: reloaded, but the API key is the one the service started with.*"
               r"run: sudo systemctl restart pivoice")
    assert d.count("reloaded: API key from") == 0
    assert d.stop()[0] == 0
