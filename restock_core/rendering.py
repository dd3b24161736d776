"""Default message templates (Jinja2). A `templates` directory in the settings overrides
any of them by file name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import attrs
import jinja2
import jinja2.meta
import markupsafe

from .errors import ConfigError
from .models import Channel, Message, SharedContent, Subscription, VariantInfo

TEMPLATE_NAME = "restock"
# Rendered once per distinct variant/locale/... and reused for every subscriber: only the
# unsubscribe link differs, so it is rendered as this marker and swapped in afterwards.
_LINK = "RESTOCKUNSUBSCRIBELINKf9d1c2"
_CACHE_SIZE = 2048
SUBJECT, TEXT, HTML, SMS = (
    "restock_email_subject.txt",
    "restock_email.txt",
    "restock_email.html",
    "restock_sms.txt",
)
TEMPLATE_FILES = (SUBJECT, TEXT, HTML, SMS)
#: the double opt-in confirmation request (`Message.template` "confirm")
CONFIRM_TEMPLATE_NAME = "confirm"
CONFIRM_FILES = (
    "confirm_email_subject.txt",
    "confirm_email.txt",
    "confirm_email.html",
    "confirm_sms.txt",
)
#: template variables that differ between subscribers of one variant and locale
_PERSONAL = frozenset({"customer_id", "attributes"})
_TAG = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8}){0,4}")


def locale_chain(locale: str | None) -> tuple[str, ...]:
    """BCP 47 fallback, most specific first: "de-AT" -> ("de-AT", "de"); "zh-hant-tw" ->
    ("zh-Hant-TW", "zh-Hant", "zh"). Anything that is not a tag gives () (the default)."""
    if not locale or not _TAG.fullmatch(locale):
        return ()
    parts = locale.replace("_", "-").split("-")
    tidy = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            tidy.append(part.title())
        elif len(part) == 2 and part.isalpha() or len(part) == 3 and part.isdigit():
            tidy.append(part.upper())
        else:
            tidy.append(part.lower())
    return tuple("-".join(tidy[:n]) for n in range(len(tidy), 0, -1))


def localized_name(name: str, tag: str) -> str:
    """restock_email.html + de -> restock_email.de.html"""
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.{tag}{dot}{ext}"


@attrs.frozen
class _Shape:
    """Template data (with the link marker) and, unless the templates read per-subscriber
    data, the rendered content shared by every subscriber of one shape."""

    data: dict[str, Any]
    content: SharedContent | None


class RenderError(Exception):
    """A template failed for one message (an undefined attribute, a failing filter): that
    message fails with this reason; the others are sent."""


@attrs.frozen
class TemplateSet:
    """The four templates chosen for one locale, with the file names they came from."""

    subject: jinja2.Template
    text: jinja2.Template
    html: jinja2.Template
    sms: jinja2.Template
    used: tuple[str, ...]  # variables the templates read (the render cache key)
    #: the file names, computed once (they are part of every render's cache key)
    names: tuple[str, ...] = attrs.field(init=False)

    @names.default
    def _names(self) -> tuple[str, ...]:
        return tuple(str(t.name) for t in (self.subject, self.text, self.html, self.sms))


class Renderer:
    """Jinja2 templates: a merchant's directory (`[restock] templates`, or the
    RESTOCK_TEMPLATES variable) first, then the shipped ones. Each file may have per-locale
    variants (`restock_email.de.html`) chosen by the subscription's locale with BCP 47
    fallback (de-AT -> de -> default); for each name the merchant's file wins over ours."""

    def __init__(self, override_dir: str | None = None):
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None and not os.path.isdir(override_dir):
            # `[restock] templates` is checked when the config is read; RESTOCK_TEMPLATES here
            raise ConfigError(
                f"templates directory {override_dir!r} (RESTOCK_TEMPLATES) does not exist or is "
                "not a directory",
                option="templates",
            )
        if override_dir:
            loaders.append(jinja2.FileSystemLoader(override_dir))
        loaders.append(jinja2.PackageLoader("restock_core", "templates"))
        self.override_dir = override_dir
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
            undefined=jinja2.ChainableUndefined,
            keep_trailing_newline=False,
        )
        if override_dir:
            self._check_dir(override_dir)
        self._sets: dict[tuple[str, ...], TemplateSet] = {}
        self._cache: dict[str, tuple[str, str | None, str | None]] = {}
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        self.templates(None)

    def _check_dir(self, folder: str) -> None:
        """Compile every template in the merchant's directory now, so a typo is a
        configuration error at start and not a failed message at restock time."""
        for path in sorted([*Path(folder).glob("restock_*"), *Path(folder).glob("confirm_*")]):
            if not path.is_file():
                continue
            try:
                self.env.parse(path.read_text(encoding="utf-8"), path.name, str(path))
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(
                    f"template {path.name} line {exc.lineno}: {exc.message}", option="templates"
                ) from None
            except UnicodeDecodeError:
                raise ConfigError(
                    f"template {path.name} is not UTF-8", option="templates"
                ) from None

    def templates(self, locale: str | None) -> TemplateSet:
        """The templates used for `locale`, resolved once per locale chain."""
        chain = locale_chain(locale)
        found = self._sets.get(chain)
        if found is None:
            chosen = [
                self.env.select_template([*(localized_name(n, t) for t in chain), n])
                for n in TEMPLATE_FILES
            ]
            used: set[str] = set()
            for template in chosen:
                source = self.env.loader.get_source(self.env, str(template.name))[0]  # type: ignore[union-attr]
                used |= jinja2.meta.find_undeclared_variables(self.env.parse(source))
            subject, text, html, sms = chosen
            found = TemplateSet(
                subject, text, html, sms, used=tuple(sorted(used - {"unsubscribe_url"}))
            )
            if (
                len(self._sets) > 256
            ):  # tags are checked, but a flood of distinct ones is cheap to cap
                self._sets.clear()
            self._sets[chain] = found
        return found

    def _rendered(
        self, channel: Channel, data: dict[str, Any]
    ) -> tuple[str, str | None, str | None]:
        """(text, subject, html) with the link marker in place of the unsubscribe URL."""
        chosen = self.templates(data.get("locale"))
        # the cache key holds only what the templates actually use, so per-subscriber data
        # a template ignores (customer_id, attributes) does not defeat the cache
        key = repr((str(channel), chosen.names, [data.get(name) for name in chosen.used]))
        found = self._cache.get(key)
        if found is None:
            try:
                if channel == Channel.SMS:
                    found = (chosen.sms.render(data).strip(), None, None)
                else:
                    found = (
                        chosen.text.render(data),
                        " ".join(chosen.subject.render(data).split()),
                        chosen.html.render(data),
                    )
            except Exception as exc:  # any template runtime error fails this message only
                raise RenderError(f"template error: {type(exc).__name__}: {exc}"[:500]) from exc
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = found
        return found

    @staticmethod
    def template_data(
        subscription: Subscription, info: VariantInfo | None, unsubscribe_url: str
    ) -> dict[str, Any]:
        info = info or VariantInfo()
        product_title = subscription.product_title or info.product_title
        variant_title = subscription.variant_title or info.title
        name = " - ".join(t for t in (product_title, variant_title) if t) or "The item you wanted"
        return {
            "name": name,
            "product_title": product_title,
            "variant_title": variant_title,
            "variant_id": subscription.variant_id,
            "product_id": subscription.product_id,
            "url": subscription.url or info.url,
            "image_url": info.image_url,
            "unsubscribe_url": unsubscribe_url,
            "locale": subscription.locale,
            "customer_id": subscription.customer_id,
            "attributes": dict(subscription.attributes),
        }

    def render_confirmation(
        self,
        *,
        delivery_id: int,
        attempt: int,
        subscription: Subscription,
        info: VariantInfo | None,
        confirm_url: str,
        unsubscribe_url: str,
    ) -> Message:
        """The double opt-in confirmation request (`confirm_*` templates, per locale like
        the restock ones): the same template data plus `confirm_url`. Rendered per message
        (confirmations are few), through every provider's normal send path."""
        chain = locale_chain(subscription.locale)
        data = self.template_data(subscription, info, unsubscribe_url)
        data["confirm_url"] = confirm_url
        try:
            subject, text, html, sms = (
                self.env.select_template([*(localized_name(n, t) for t in chain), n])
                for n in CONFIRM_FILES
            )
            if subscription.channel == Channel.SMS:
                return _message(
                    subscription,
                    CONFIRM_TEMPLATE_NAME,
                    data,
                    delivery_id=delivery_id,
                    attempt=attempt,
                    unsubscribe_url=unsubscribe_url,
                    text=sms.render(data).strip(),
                )
            return _message(
                subscription,
                CONFIRM_TEMPLATE_NAME,
                data,
                delivery_id=delivery_id,
                attempt=attempt,
                unsubscribe_url=unsubscribe_url,
                subject=" ".join(subject.render(data).split()),
                text=text.render(data),
                html=html.render(data),
            )
        except Exception as exc:  # any template error fails this message only
            raise RenderError(f"template error: {type(exc).__name__}: {exc}"[:500]) from exc

    def _shape(self, subscription: Subscription, info: VariantInfo | None) -> _Shape:
        """What every subscriber with the same channel, locale, variant and titles gets:
        the template data and the content rendered with the link marker, made once."""
        key = (
            subscription.channel,
            subscription.locale,
            subscription.source,
            subscription.variant_id,
            subscription.product_id,
            subscription.product_title,
            subscription.variant_title,
            subscription.url,
            info,
        )
        found = self._shapes.get(key)
        if found is None:
            data = self.template_data(subscription, info, _LINK)
            chosen = self.templates(subscription.locale)
            # templates reading per-subscriber data are rendered per subscriber (cached on
            # what they read); everything else in `data` is fixed by `key`
            personal = bool(_PERSONAL & set(chosen.used))
            content = None
            if not personal:
                text, subject, html = self._rendered(subscription.channel, data)
                content = SharedContent(_LINK, text, subject, html)
            found = _Shape(data, content)
            if len(self._shapes) >= _CACHE_SIZE:
                self._shapes.clear()
            self._shapes[key] = found
        return found

    def render(
        self,
        *,
        delivery_id: int,
        attempt: int,
        subscription: Subscription,
        info: VariantInfo | None,
        unsubscribe_url: str,
        unsubscribe_post_url: str,
    ) -> Message:
        """The restock message for one subscriber. The content is rendered once per shape
        (channel, locale, variant, titles: see `_shape`) and shared; per subscriber only the
        unsubscribe link is put in and the Message built."""
        shape = self._shape(subscription, info)
        data = shape.data.copy()
        data["unsubscribe_url"] = unsubscribe_url
        data["customer_id"] = subscription.customer_id
        data["attributes"] = dict(subscription.attributes)
        content = shape.content
        if content is None:  # the templates read per-subscriber data
            text, subject, html = self._rendered(
                subscription.channel, data | {"unsubscribe_url": _LINK}
            )
        else:
            text, subject, html = content.text, content.subject, content.html
        text = text.replace(_LINK, unsubscribe_url)
        return _message(
            subscription,
            TEMPLATE_NAME,
            data,
            delivery_id=delivery_id,
            attempt=attempt,
            unsubscribe_url=unsubscribe_url,
            text=text,
            subject=(subject or "").replace(_LINK, unsubscribe_url),
            html=(html or "").replace(_LINK, _html_url(unsubscribe_url)),
            # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the URL
            headers={
                "List-Unsubscribe": f"<{unsubscribe_post_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            content=content,
        )


def _html_url(url: str) -> str:
    """The URL as HTML text (Jinja's escaping); most URLs have nothing to escape."""
    if "&" in url or "<" in url or ">" in url or '"' in url or "'" in url:
        return str(markupsafe.escape(url))
    return url


def _message(
    subscription: Subscription,
    template: str,
    data: dict[str, Any],
    *,
    delivery_id: int,
    attempt: int,
    unsubscribe_url: str,
    text: str,
    subject: str | None = None,
    html: str | None = None,
    headers: dict[str, str] | None = None,
    content: SharedContent | None = None,
) -> Message:
    """The Message of one rendered template for `subscription`: an SMS carries only the
    text; an email its subject, text, HTML and headers (given for an SMS, they are dropped).
    `content` is the shared rendering it came from, if any."""
    common: dict[str, Any] = {
        "delivery_id": delivery_id,
        "to": subscription.contact,
        "text": text,
        "unsubscribe_url": unsubscribe_url,
        "template": template,
        "variant_id": subscription.variant_id,
        "template_data": data,
        "locale": subscription.locale,
        "subscription_id": subscription.id,
        "attempt": attempt,
        "content": content,
    }
    if subscription.channel == Channel.SMS:
        return Message(channel=Channel.SMS, **common)
    return Message(
        channel=Channel.EMAIL, subject=subject, html=html, headers=headers or {}, **common
    )
