"""The documented default config and the settings models stay in step."""

from __future__ import annotations

import re
import tomllib

import pytest
from harness import ROOT

from pivoice import config, configfile
from pivoice.errors import ConfigError


def documented() -> dict:
    return tomllib.loads((ROOT / "config" / "pivoice.toml").read_text())


def test_documented_config_is_the_defaults():
    assert configfile.parse(documented(), "config/pivoice.toml").model_dump() == config.Settings().model_dump()


def test_every_key_is_documented_with_a_comment():
    text = (ROOT / "config" / "pivoice.toml").read_text()
    data = documented()
    for section, model in config.Settings.model_fields.items():
        if section == "source":
            continue
        assert section in data, f"[{section}] missing from config/pivoice.toml"
        for key, field in model.annotation.model_fields.items():
            if field.default is None:  # TOML has no null: an unset key is shown commented out
                assert re.search(rf"^# {key} = ", text, re.M), f"{section}.{key} not shown in config/pivoice.toml"
                continue
            assert key in data[section], f"{section}.{key} missing from config/pivoice.toml"
            # a comment stands above the key, or above the group of keys it belongs to
            above = text[: re.search(rf"^{key} =", text, re.M).start()].rstrip().splitlines()
            while above and re.match(r"^\w+ =", above[-1]):
                above.pop()
            assert above and above[-1].startswith("#"), f"{section}.{key} has no comment above it"


def test_absent_default_file_means_builtin_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr(configfile, "DEFAULT_PATH", tmp_path / "none.toml")
    assert configfile.load(None) == config.Settings()


@pytest.mark.parametrize("data,msg", [
    ({"audio": {"input_device": ""}}, "'audio.input_device': String should have at least 1 character"),
    ({"wake": {"models": []}}, "'wake.models': List should have at least 1 item"),
    ({"wake": {"models": [" "]}}, "'wake.models': a model name is empty"),
    ({"conversation": {"follow_up_seconds": -1}}, "'conversation.follow_up_seconds'"),
    ({"log": {"level": "verbose"}}, "'log.level': Input should be 'debug', 'info', 'warning' or 'error'"),
    ({"gpio": {"button_pin": -4}}, "gpio.button_pin: -4 is not a GPIO pin; use a BCM number from 0 to 27"),
    ({"gpio": {"led": "rgb", "led_pins": [5]}}, 'gpio.led_pins: gpio.led = "rgb" needs 3 pin(s), got 1'),
    ({"gpio": {"enabled": False, "mute_pin": 40}}, "gpio.mute_pin: 40 is not a GPIO pin"),
    ({"live": {"base_url": "not a url"}}, "'live.base_url': not a URL"),
    ({"live": {"base_url": "ftp://gw.example"}}, "'live.base_url': not a URL"),
    ({"live": {"base_url": "https://gw.example:port"}}, "'live.base_url': not a usable URL"),
])
def test_errors_name_the_key(data, msg):
    with pytest.raises(ConfigError, match=re.escape(msg)):
        configfile.parse(data, "test.toml")


def test_several_problems_are_all_named():
    with pytest.raises(ConfigError) as e:
        configfile.parse({"wake": {"threshold": 2}, "x": 1}, "test.toml")
    assert "wake.threshold" in e.value.message and "'x'" in e.value.message


@pytest.mark.parametrize("url", ["", "https://gw.example", "https://127.0.0.1:8443/v1", "http://[::1]:80"])
def test_usable_base_urls_pass(url):
    assert configfile.parse({"live": {"base_url": url}}, "test.toml").live.base_url == url


def test_the_key_service_config_is_documented_and_is_the_defaults():
    from pivoice.keyservice.settings import KeyServiceSettings

    text = (ROOT / "config" / "tokens.toml").read_text()
    data = tomllib.loads(text)
    assert configfile.parse_as(KeyServiceSettings, data, "config/tokens.toml").model_dump() == \
        KeyServiceSettings().model_dump()
    for section, model in KeyServiceSettings.model_fields.items():
        if section == "source":
            continue
        for key in model.annotation.model_fields:
            assert key in data[section], f"{section}.{key} missing from config/tokens.toml"
            above = text[: re.search(rf"^{key} =", text, re.M).start()].rstrip().splitlines()
            while above and re.match(r"^\w+ =", above[-1]):
                above.pop()
            assert above and above[-1].startswith("#"), f"{section}.{key} has no comment above it"
