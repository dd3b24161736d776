"""SMS text (GSM-7 folding, segment counts, SmartEncoded) and credentials (Auth Token or API
key) against the fake Twilio, plus the options that drive them."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from restock_twilio import TwilioOptions, TwilioProvider
from restock_twilio.gsm import fold_to_gsm7, is_gsm7, sms_segments
from restock_twilio.testing import FakeTwilio

from restock_core.config import structure_options
from restock_core.errors import ConfigError
from restock_core.models import Channel, Hold, Outcome
from restock_core.testing import make_message

MakeProvider = Callable[..., TwilioProvider]
API_KEY = "SK" + "0123456789abcdef" * 2
API_SECRET = "api-key-secret-do-not-log-5150"

#: a restock text that fits 2 GSM-7 segments -- until a title brings a curly apostrophe
TITLE = "Ada’s “Field” Jacket – Navy…"
TEXT = (
    f"Good news! {TITLE} is back in stock at Example Outfitters. Quantities are limited, so "
    "grab yours before it goes again: https://shop.example/p/ada-field-jacket?v=navy-m "
    "Reply STOP to opt out: https://restock.example/u/AbCdEf"
)


def sms(delivery_id: int, text: str = TEXT) -> Any:
    return attrs.evolve(make_message(delivery_id, channel=Channel.SMS), text=text)


# --------------------------------------------------------------------------- GSM-7


def test_typographic_punctuation_turns_two_segments_into_three_and_folding_undoes_it() -> None:
    # 160/153 GSM-7 septets, 70/67 UCS-2 units per segment:
    # https://www.twilio.com/docs/glossary/what-sms-character-limit
    raw = sms_segments(TEXT)
    assert (raw.encoding, raw.count) == ("UCS-2", 4)
    folded = fold_to_gsm7(TEXT)
    assert 'Ada\'s "Field" Jacket - Navy...' in folded
    assert is_gsm7(folded)
    assert (sms_segments(folded).encoding, sms_segments(folded).count) == ("GSM-7", 2)


def test_segment_counts_at_the_boundaries() -> None:
    assert sms_segments("").count == 1
    assert sms_segments("a" * 160).count == 1
    assert sms_segments("a" * 161).count == 2
    assert sms_segments("a" * 306).count == 2
    assert sms_segments("a" * 307).count == 3
    # extension characters (€ [ ] { } ...) take two septets and are never split
    assert sms_segments("€" * 80) == sms_segments("€" * 80).__class__("GSM-7", 160, 1)
    assert sms_segments("a" * 158 + "€").count == 1  # 160 septets
    assert sms_segments("a" * 159 + "€").count == 2  # 161 septets
    # 306 septets would fit 2 parts of 153, but the escaped € cannot straddle them
    assert sms_segments("a" * 152 + "€" + "a" * 152).count == 3
    # UCS-2: 70 / 67; an emoji is a surrogate pair (two units), never split
    assert sms_segments("й" * 70).count == 1
    assert sms_segments("й" * 71).count == 2
    assert sms_segments("й" * 68 + "😀").count == 1  # 70 units
    assert sms_segments("й" * 69 + "😀").count == 2  # 71 units: 67 + 4
    assert sms_segments("😀" * 35) == sms_segments("😀" * 35).__class__("UCS-2", 70, 1)


def test_letters_outside_gsm7_are_left_alone() -> None:
    assert fold_to_gsm7("Пальто – синее") == "Пальто - синее"
    assert not is_gsm7(fold_to_gsm7("Пальто – синее"))
    assert fold_to_gsm7("Ça coûte 5 €") == "Ça coûte 5 €"  # Ç and € are GSM-7; û is not


def test_provider_sends_folded_text(make_provider: MakeProvider, fake_twilio: FakeTwilio) -> None:
    (result,) = make_provider().send([sms(1)])
    assert result.outcome == Outcome.SENT
    body = fake_twilio.message_requests[0].form["Body"][0]
    assert body == fold_to_gsm7(TEXT) and is_gsm7(body)
    assert "SmartEncoded" not in fake_twilio.message_requests[0].form


def test_folding_can_be_turned_off_and_smart_encoding_on(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    make_provider(fold_punctuation=False, smart_encoded=True).send([sms(1)])
    form = fake_twilio.message_requests[0].form
    assert form["Body"] == [TEXT]
    assert form["SmartEncoded"] == ["true"]  # the SDK serialises booleans in lower case


def test_long_texts_warn_once_per_template(
    make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="restock.twilio")
    provider = make_provider(segment_warning=1)
    provider.send([sms(1), sms(2), sms(3)])
    warnings = [r for r in caplog.records if "segment" in r.getMessage()]
    assert len(warnings) == 1
    assert "2-segment" in warnings[0].getMessage()
    caplog.clear()
    make_provider().send([sms(4)])  # default: warn above 3 segments
    assert not [r for r in caplog.records if "segment" in r.getMessage()]


# --------------------------------------------------------------------------- credentials


def test_api_key_and_secret_authenticate_instead_of_the_auth_token(
    fake_twilio: FakeTwilio, creds: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_twilio.api_keys[API_KEY] = API_SECRET
    provider = TwilioProvider(
        TwilioOptions(
            account_sid=creds.account_sid,
            api_key=API_KEY,
            api_secret=API_SECRET,
            from_number=creds.from_number,
            base_url=fake_twilio.url,
        )
    )
    try:
        assert provider.send([sms(1)])[0].outcome == Outcome.SENT
        (request,) = fake_twilio.message_requests
        # the account stays in the path; the key is the Basic-auth user
        assert request.path == f"/2010-04-01/Accounts/{creds.account_sid}/Messages.json"
        expected = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
        assert request.headers["authorization"] == f"Basic {expected}"
        # a revoked key: a provider outage (kept queued by the core), the secret nowhere
        fake_twilio.api_keys[API_KEY] = "rotated"
        (result,) = provider.send([sms(2)])
        assert result.hold == Hold.UNAUTHORIZED and "authentication" in (result.reason or "")
    finally:
        provider.close()
    assert API_SECRET not in caplog.text
    assert API_SECRET not in repr(provider) and API_SECRET not in repr(provider.options)


def test_without_the_auth_token_webhooks_are_refused_and_no_callback_is_requested(
    fake_twilio: FakeTwilio, creds: Any
) -> None:
    fake_twilio.api_keys[API_KEY] = API_SECRET
    provider = TwilioProvider(
        TwilioOptions(
            account_sid=creds.account_sid,
            api_key=API_KEY,
            api_secret=API_SECRET,
            from_number=creds.from_number,
            base_url=fake_twilio.url,
        )
    )

    class FakeApp:  # the part of PluginHost this test reaches
        public_url = "https://restock.example"

    provider.bind(FakeApp(), "sms")  # type: ignore[arg-type]
    try:
        assert provider.status_callback_url is None
        provider.send([sms(1)])
        assert "StatusCallback" not in fake_twilio.message_requests[0].form
        api = FastAPI()
        api.include_router(provider.routes(FakeApp()), prefix="/sms")  # type: ignore[arg-type]
        client = TestClient(api)
        for path in ("/sms/status", "/sms/inbound"):
            answer = client.post(
                path,
                content="MessageSid=SM1&MessageStatus=failed",
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": "x",
                },
            )
            assert answer.status_code == 401
            assert "auth_token" in answer.json()["error"]["message"]
    finally:
        provider.close()


# --------------------------------------------------------------------------- options


def build(creds: Any, **options: Any) -> TwilioOptions:
    raw = {"account_sid": creds.account_sid, "from_number": creds.from_number, **options}
    return structure_options(TwilioOptions, raw, plugin="twilio")


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({}, "auth_token", "api_key"),
        ({"api_key": API_KEY}, "api_key", "set both"),
        ({"auth_token": "t", "api_secret": API_SECRET}, "api_key", "set both"),
        ({"api_key": "AC" + "0" * 32, "api_secret": API_SECRET}, "api_key", "'SK'"),
        ({"auth_token": "t", "default_region": "gb"}, "default_region", "ISO 3166"),
        ({"auth_token": "t", "default_region": "XX"}, "default_region", "ISO 3166"),
        ({"auth_token": "t", "segment_warning": -1}, "segment_warning", "0 (off)"),
        ({"auth_token": "t", "help_text": " "}, "help_text", "between 1 and 1600"),
        ({"auth_token": "t", "fold_punctuation": "yes"}, "fold_punctuation", "true or false"),
    ],
)
def test_invalid_text_and_credential_options(
    creds: Any, options: dict[str, Any], option: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build(creds, **options)
    assert caught.value.option == option, str(caught.value)
    assert words in str(caught.value)
    assert API_SECRET not in str(caught.value)


def test_text_and_credential_defaults(creds: Any) -> None:
    options = build(creds, api_key=API_KEY, api_secret=API_SECRET, default_region="GB")
    assert options.auth_token is None
    assert (options.fold_punctuation, options.smart_encoded, options.segment_warning) == (
        True,
        False,
        3,
    )
    assert "STOP" in options.help_text
    provider = TwilioProvider(options)
    assert provider.default_region == "GB"
    assert API_SECRET not in repr(options)
