"""Option validation: errors name the option and never show the token."""

from __future__ import annotations

from typing import Any

import pytest
from restock_twilio import TwilioOptions, TwilioProvider

from restock_core.config import Secret, structure_options
from restock_core.errors import ConfigError
from restock_core.plugins import PluginRegistry


def build(creds: Any, **options: Any) -> TwilioOptions:
    raw = {"account_sid": creds.account_sid, "auth_token": creds.auth_token, **options}
    return structure_options(TwilioOptions, raw, plugin="twilio")


def test_registered_under_the_entry_point_name() -> None:
    factory = PluginRegistry().factories["twilio"]
    assert factory.kind == "provider"
    assert factory.options is TwilioOptions


def test_defaults(creds: Any) -> None:
    options = build(creds, from_number=creds.from_number)
    assert isinstance(options.auth_token, Secret)
    assert options.base_url == "https://api.twilio.com"
    assert (options.timeout, options.concurrency, options.batch_size) == (10.0, 8, 100)
    assert options.status_callback is None
    provider = TwilioProvider(options)
    assert provider.max_batch_size == 100 and provider.channels == {"sms"}
    assert creds.auth_token not in repr(options) and creds.auth_token not in repr(provider)


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({}, "from_number", "exactly one"),
        (
            {"from_number": "+14155550100", "messaging_service_sid": "MG" + "a" * 32},
            "from_number",
            "exactly one",
        ),
        ({"from_number": "555-0100"}, "from_number", "E.164"),
        ({"messaging_service_sid": "XX123"}, "messaging_service_sid", "MG"),
        ({"from_number": "+14155550100", "timeout": 0}, "timeout", "greater than 0"),
        ({"from_number": "+14155550100", "concurrency": 0}, "concurrency", "between"),
        ({"from_number": "+14155550100", "batch_size": 0}, "batch_size", "at least 1"),
        ({"from_number": "+14155550100", "base_url": "api.twilio.com"}, "base_url", "http"),
        ({"from_number": "+14155550100", "status_callback": "ftp://x"}, "status_callback", "http"),
        ({"from_number": "+14155550100", "concurrency": "8"}, "concurrency", "an integer"),
    ],
)
def test_invalid_options_name_the_option(
    creds: Any, options: dict[str, Any], option: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build(creds, **options)
    assert caught.value.option == option
    assert words in str(caught.value)
    assert creds.auth_token not in str(caught.value)


def test_bad_account_sid(creds: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        structure_options(
            TwilioOptions,
            {"account_sid": "nope", "auth_token": "x", "from_number": "+14155550100"},
            plugin="twilio",
        )
    assert caught.value.option == "account_sid"


def test_alphanumeric_sender_and_empty_callback(creds: Any) -> None:
    options = build(creds, from_number="RESTOCK", status_callback="")
    assert TwilioProvider(options).status_callback_url is None
