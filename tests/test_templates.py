"""Merchant-owned templates: `[restock] templates`, per-locale files with BCP 47 fallback,
the shipped German defaults, `restock preview`, and the logger's file carrying the HTML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from restock_core.cli import main
from restock_core.config import load_config, parse_config
from restock_core.errors import ConfigError
from restock_core.preview import sms_info
from restock_core.rendering import Renderer, locale_chain


@pytest.mark.parametrize(
    "tag, chain",
    [
        ("de-AT", ("de-AT", "de")),
        ("de_at", ("de-AT", "de")),
        ("DE", ("de",)),
        ("zh-hant-tw", ("zh-Hant-TW", "zh-Hant", "zh")),
        ("es-419", ("es-419", "es")),
        (None, ()),
        ("", ()),
        ("../../etc/passwd", ()),
        ("de AT", ()),
    ],
)
def test_locale_chain(tag, chain) -> None:
    assert locale_chain(tag) == chain


def names(renderer: Renderer, locale: str | None) -> tuple[str, ...]:
    return renderer.templates(locale).names


def test_shipped_german_and_fallbacks() -> None:
    renderer = Renderer()
    assert names(renderer, "de-AT") == (
        "restock_email_subject.de.txt",
        "restock_email.de.txt",
        "restock_email.de.html",
        "restock_sms.de.txt",
    )
    assert (
        names(renderer, "fr")
        == names(renderer, None)
        == (
            "restock_email_subject.txt",
            "restock_email.txt",
            "restock_email.html",
            "restock_sms.txt",
        )
    )


def test_merchant_templates_win_per_name(tmp_path: Path) -> None:
    (tmp_path / "restock_email_subject.de-AT.txt").write_text("Servus: {{ name }}")
    (tmp_path / "restock_email_subject.txt").write_text("Hey: {{ name }}")
    (tmp_path / "restock_sms.de.txt").write_text("Da: {{ name }} {{ unsubscribe_url }}")
    renderer = Renderer(str(tmp_path))
    assert names(renderer, "de-AT")[0] == "restock_email_subject.de-AT.txt"
    assert names(renderer, "de-DE")[0] == "restock_email_subject.de.txt"  # ours, German
    assert names(renderer, "fr")[0] == "restock_email_subject.txt"  # theirs
    assert names(renderer, "de")[3] == "restock_sms.de.txt"


def test_templates_setting_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"restock": {"templates": str(tmp_path / "missing")}})
    assert error.value.option == "templates" and "does not exist" in str(error.value)
    # relative to the config file's folder
    (tmp_path / "mine").mkdir()
    config_file = tmp_path / "plugins.toml"
    config_file.write_text('[restock]\ntemplates = "mine"\n')
    assert load_config(config_file).settings.templates == str((tmp_path / "mine").resolve())


def test_template_syntax_error_is_a_config_error(make_app, tmp_path: Path) -> None:
    (tmp_path / "restock_email.de.html").write_text("{% if %}")
    with pytest.raises(ConfigError) as error:
        make_app({"restock": {"templates": str(tmp_path)}})
    assert "restock_email.de.html line 1" in str(error.value)


def test_each_subscriber_gets_their_language(make_app, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "restock_email_subject.fr.txt").write_text("De retour : {{ name }}")
    app = make_app(
        {
            "restock": {"templates": str(mine)},
            "plugins": [
                {"resolve": "logger", "options": {"file": str(outbox)}},
                {"resolve": "manual"},
            ],
        }
    )
    for email, locale in (
        ("de@example.com", "de-CH"),
        ("fr@example.com", "fr"),
        ("en@example.com", None),
    ):
        app.subscribe("v1", email=email, locale=locale, product_title="Tasse")
    app.subscribe("v1", phone="+14155550100", locale="de", product_title="Tasse")
    app.set_stock("v1", 0)
    app.set_stock("v1", 9)
    app.worker().drain()
    lines = {line["to"]: line for line in map(json.loads, outbox.read_text().splitlines())}
    assert lines["de@example.com"]["subject"] == "Wieder verfügbar: Tasse"
    assert '<html lang="de-CH">' in lines["de@example.com"]["html"]
    assert "Abmelden" in lines["de@example.com"]["html"]
    assert lines["fr@example.com"]["subject"] == "De retour : Tasse"
    assert lines["en@example.com"]["subject"] == "Back in stock: Tasse"
    assert lines["en@example.com"]["html"].startswith("<!doctype html>")
    assert lines["+14155550100"]["text"].startswith("Wieder da: Tasse")
    assert lines["+14155550100"]["html"] is None


def test_preview_command(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(f'[restock]\ndatabase = "sqlite:///{tmp_path / "r.db"}"\n')
    runner = CliRunner()
    german = runner.invoke(main, ["--config", str(config), "preview", "mug-1", "--locale", "de-AT"])
    assert german.exit_code == 0, german.output
    assert "Subject: Wieder verfügbar: Ihr Wunschartikel" in german.output
    assert "--- html ---" in german.output and "List-Unsubscribe-Post" in german.output
    sms = runner.invoke(
        main, ["--config", str(config), "preview", "mug-1", "--channel", "sms", "--json"]
    )
    body = json.loads(sms.output)
    assert body["channel"] == "sms" and body["sms"]["encoding"] == "GSM-7" and body["html"] is None
    bad = runner.invoke(main, ["--config", str(config), "preview", "mug-1", "--source", "nope"])
    assert bad.exit_code == 1 and bad.output.startswith("error: unknown source 'nope'")


@pytest.mark.parametrize(
    "text, encoding, segments",
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("€" * 80, "GSM-7", 1),  # extension characters take two septets: 160
        ("€" * 81, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("ü" * 160, "GSM-7", 1),
        ("ł" * 70, "UCS-2", 1),
        ("ł" * 71, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # surrogate pairs: two units each
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_sms_segments(text, encoding, segments) -> None:
    info = sms_info(text)
    assert (info.encoding, info.segments) == (encoding, segments)


def test_missing_template_dir_stops_the_cli_with_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "sqlite:///{tmp_path / "r.db"}"\ntemplates = "nowhere"\n'
    )
    result = CliRunner().invoke(main, ["--config", str(config), "preview", "v1"])
    assert result.exit_code == 2
    assert result.output.startswith("error: configuration: ")
    assert "templates" in result.output and "does not exist" in result.output
    served = CliRunner().invoke(main, ["--config", str(config), "serve", "--port", "1"])
    assert served.exit_code == 2 and "templates" in served.output


def _subscriber(sub_id: int, **fields):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from restock_core.models import Channel, Subscription, SubscriptionStatus

    values = {
        "variant_id": "v1",
        "scope": "default",
        "source": "manual",
        "channel": Channel.EMAIL,
        "contact": f"s{sub_id}@example.com",
        "status": SubscriptionStatus.PENDING,
        "created_at": datetime.now(UTC),
        "product_title": "Tasse",
    } | fields
    return Subscription(id=sub_id, **values)


def _render(renderer: Renderer, sub, url: str):  # type: ignore[no-untyped-def]
    return renderer.render(
        delivery_id=sub.id,
        attempt=1,
        subscription=sub,
        info=None,
        unsubscribe_url=url,
        unsubscribe_post_url=url,
    )


def test_restock_messages_share_their_content_and_differ_only_in_the_link() -> None:
    """Content is rendered once per variant/locale/titles and handed on as
    `Message.content`; each message's own text is that content with its link put in."""
    renderer = Renderer()
    urls = ["https://shop.example/unsubscribe/a.1", "https://shop.example/unsubscribe/?x=1&y=2"]
    first, second = (
        _render(renderer, _subscriber(n, customer_id=f"c{n}"), url)
        for n, url in zip((1, 2), urls, strict=True)
    )
    assert first.content is not None and first.content is second.content
    shared = first.content
    assert shared.link not in (first.text + (first.subject or "") + (first.html or ""))
    for message, url in ((first, urls[0]), (second, urls[1])):
        assert message.text == shared.text.replace(shared.link, url)
        assert message.subject == (shared.subject or "").replace(shared.link, url)
        assert message.html == (shared.html or "").replace(shared.link, url.replace("&", "&amp;"))
        assert url in message.text
        assert message.template_data["unsubscribe_url"] == url
    assert first.template_data["customer_id"] == "c1"
    assert second.template_data["customer_id"] == "c2"
    other = _render(renderer, _subscriber(3, variant_id="v2", product_title="Krug"), urls[0])
    assert other.content is not None and other.content != shared
    assert "Krug" in other.text


def test_templates_reading_per_subscriber_data_are_rendered_per_subscriber(
    tmp_path: Path,
) -> None:
    (tmp_path / "restock_email.txt").write_text(
        "Hi {{ customer_id }} ({{ attributes.size }}): {{ name }} {{ unsubscribe_url }}"
    )
    renderer = Renderer(str(tmp_path))
    one = _render(renderer, _subscriber(1, customer_id="c1", attributes={"size": "M"}), "u1")
    two = _render(renderer, _subscriber(2, customer_id="c2", attributes={"size": "L"}), "u2")
    assert one.text == "Hi c1 (M): Tasse u1"
    assert two.text == "Hi c2 (L): Tasse u2"
    assert one.content is None and two.content is None
