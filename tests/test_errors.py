"""Bad input: one clear line naming the problem and what to do, no traceback, the right exit code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import TEST_KEY

GOOD = """
[audio]
input_device = "mic_file"
output_device = "spk_file"
"""

CASES = {
    "malformed TOML": ("[wake\nthreshold = 0.5", 78, r"is not valid TOML"),
    "unknown key": ("[wake]\nthresold = 0.6", 78, r"unknown key 'wake.thresold'"),
    "unknown section": ("[wakeword]\nthreshold = 0.6", 78, r"unknown key 'wakeword'"),
    "wrong type": ('[wake]\nthreshold = "high"', 78, r"'wake.threshold': Input should be a valid number.*'high'"),
    "out of range": ("[wake]\nthreshold = 1.5", 78, r"'wake.threshold': Input should be less than 1"),
    "list expected": ('[wake]\nmodels = "hey_jarvis"', 78, r"'wake.models': Input should be a valid list"),
    "unknown wake model": ('[wake]\nmodels = ["hey_siri"]', 78, r"unknown wake word model 'hey_siri'. Built-in models: alexa, hey_jarvis"),
    "missing model file": ('[wake]\nmodels = ["/nowhere/word.tflite"]', 78, r"model file /nowhere/word.tflite does not exist"),
    "no such capture device": ('[audio]\ninput_device = "nope"\noutput_device = "spk_file"', 78,
                               r"audio.input_device: there is no ALSA capture device named 'nope'. `arecord -L`"),
    "no such playback device": ('[audio]\ninput_device = "mic_file"\noutput_device = "nada"', 78,
                                r"audio.output_device: there is no ALSA playback device named 'nada'. `aplay -L`"),
}


def check_one_clear_error(d, code: int, pattern: str, expected_code: int):
    assert code == expected_code, d.output
    errors = [line for line in d.lines if " ERROR " in f" {line}"]
    assert len(errors) == 1, d.output
    import re

    assert re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in d.output
    assert "ALSA lib" not in d.output  # alsa-lib's own stderr lines are routed to the debug log


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config(case, run_daemon, tmp_path):
    text, expected_code, pattern = CASES[case]
    (tmp_path / "mic.raw").write_bytes(b"\0" * 64000)
    d = run_daemon(text)
    check_one_clear_error(d, d.wait_exit(), pattern, expected_code)


def test_missing_config_file(run_daemon, tmp_path):
    d = run_daemon(None, args=["run", "--config", str(tmp_path / "absent.toml")])
    check_one_clear_error(d, d.wait_exit(), r"config file .*absent.toml does not exist", 78)


def test_missing_api_key_names_the_three_ways(run_daemon):
    d = run_daemon(GOOD, key=None)
    check_one_clear_error(
        d, d.wait_exit(),
        r"no Gemini API key found.*GEMINI_API_KEY.*live.api_key_file.*systemd credential 'gemini-api-key'", 78)


@pytest.mark.parametrize("content,pattern", [("", "is empty"), ("two words\n", "more than one word")])
def test_bad_key_file(content, pattern, run_daemon, tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(content)
    d = run_daemon(GOOD + f'[live]\napi_key_file = "{key_file}"\n', key=None)
    check_one_clear_error(d, d.wait_exit(), pattern, 78)


def test_key_from_systemd_credential_is_used_and_never_logged(run_daemon, standin, tmp_path):
    (tmp_path / "mic.raw").write_bytes(b"\0" * 3200)  # check opens the microphone too
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "gemini-api-key").write_text(TEST_KEY + "\n")
    d = run_daemon(GOOD + "[log]\nlevel = \"debug\"\n", key=None,
                   extra_env={"CREDENTIALS_DIRECTORY": str(creds), **standin.env()}, args=["check"])
    assert d.wait_exit() == 0, d.output
    assert "API key from systemd credential gemini-api-key" in d.output
    assert TEST_KEY not in d.output


# -- paths and files that are not what they claim to be ----------------------------------------------


@pytest.mark.parametrize("kind", ["symlink loop", "fifo", "device"])
def test_config_path_that_is_not_a_readable_file(kind, run_daemon, tmp_path):
    path = tmp_path / "pivoice.toml"
    if kind == "symlink loop":
        os.symlink(tmp_path / "other.toml", path)
        os.symlink(path, tmp_path / "other.toml")
        pattern = r"cannot read config file .*pivoice.toml: Too many levels of symbolic links"
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
        pattern = r"config path .*pivoice.toml is not a regular file"
    else:
        path = Path("/dev/zero")  # reading it would never end
        pattern = r"config path /dev/zero is not a regular file"
    for command in ("run", "check"):
        d = run_daemon(None, args=[command, "--config", str(path)])
        check_one_clear_error(d, d.wait_exit(), pattern, 78)


def wrong_models(tmp_path) -> dict[str, tuple[Path, str]]:
    from pivoice.wake.openwakeword import builtin_models_dir

    mel = tmp_path / "mel.tflite"  # a valid TFLite model, but the feature extractor, not a classifier
    mel.write_bytes((builtin_models_dir() / "melspectrogram.tflite").read_bytes())
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(bytes(range(256)) * 40)
    return {"not a classifier": (mel, r"wake.models: .*mel.tflite is not an openWakeWord classifier \(input "
                                      r"shape \(1, 1\), output shape \(1, 1, 1, 32\); expected \(1, N, 96\)"),
            "not a model": (garbage, r"wake.models: .*garbage.tflite is not a usable TFLite model")}


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("case", ["not a classifier", "not a model"])
def test_wake_model_file_that_is_not_a_wake_word_classifier(case, command, run_daemon, tmp_path):
    """`check` loads the models in LiteRT as `run` does: what one refuses, the other does."""
    (tmp_path / "mic.raw").write_bytes(b"\0" * 64000)
    path, pattern = wrong_models(tmp_path)[case]
    d = run_daemon(GOOD + f'[wake]\nmodels = ["{path}"]\n', args=[command])
    check_one_clear_error(d, d.wait_exit(), pattern, 78)


CHECK_CASES = {
    "negative pin": ("[gpio]\nbutton_pin = -4", r"gpio.button_pin: -4 is not a GPIO pin; use a BCM number from 0 to 27"),
    "rgb with one pin": ('[gpio]\nled = "rgb"\nled_pins = [5]', r'gpio.led_pins: gpio.led = "rgb" needs 3 pin\(s\), got 1'),
    "pin used twice": ('[gpio]\nled = "led"\nled_pins = [17]\nmute_pin = 17',
                       r"gpio.mute_pin: GPIO17 is already used by gpio.led_pins\[0\]"),
    "base_url not a url": ('[live]\nbase_url = "not a url"', r"'live.base_url': not a URL: give one like https://"),
    "base_url bad port": ('[live]\nbase_url = "https://gw.example:99999"', r"'live.base_url': not a usable URL"),
}


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_check_refuses_what_run_would_fail_on(case, command, run_daemon):
    text, pattern = CHECK_CASES[case]
    d = run_daemon(text, args=[command])
    check_one_clear_error(d, d.wait_exit(), pattern, 78)
    assert "OK:" not in d.output
