"""Default message templates (Jinja2). A `templates` directory in the settings overrides
any of them by file name."""

from __future__ import annotations

from typing import Any

import jinja2
import jinja2.meta
import markupsafe

from .models import Channel, Message, Subscription, VariantInfo

TEMPLATE_NAME = "restock"
# Rendered once per distinct variant/locale/... and reused for every subscriber: only the
# unsubscribe link differs, so it is rendered as this marker and swapped in afterwards.
_LINK = "RESTOCKUNSUBSCRIBELINKf9d1c2"
_CACHE_SIZE = 2048


class Renderer:
    def __init__(self, override_dir: str | None = None):
        loaders: list[jinja2.BaseLoader] = []
        if override_dir:
            loaders.append(jinja2.FileSystemLoader(override_dir))
        loaders.append(jinja2.PackageLoader("restock_core", "templates"))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
            undefined=jinja2.ChainableUndefined,
            keep_trailing_newline=False,
        )
        self._subject = self.env.get_template("restock_email_subject.txt")
        self._text = self.env.get_template("restock_email.txt")
        self._html = self.env.get_template("restock_email.html")
        self._sms = self.env.get_template("restock_sms.txt")
        self._cache: dict[str, tuple[str, str | None, str | None]] = {}
        # the cache key holds only what the templates actually use, so per-subscriber data
        # a template ignores (customer_id, attributes) does not defeat the cache
        used: set[str] = set()
        for name in (
            "restock_email_subject.txt",
            "restock_email.txt",
            "restock_email.html",
            "restock_sms.txt",
        ):
            source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
            used |= jinja2.meta.find_undeclared_variables(self.env.parse(source))
        self._used = sorted(used - {"unsubscribe_url"})

    def _rendered(
        self, channel: Channel, data: dict[str, Any]
    ) -> tuple[str, str | None, str | None]:
        """(text, subject, html) with the link marker in place of the unsubscribe URL."""
        key = channel + repr([data.get(name) for name in self._used])
        found = self._cache.get(key)
        if found is None:
            if channel == Channel.SMS:
                found = (self._sms.render(data).strip(), None, None)
            else:
                found = (
                    self._text.render(data),
                    " ".join(self._subject.render(data).split()),
                    self._html.render(data),
                )
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
        data = self.template_data(subscription, info, _LINK)
        text, subject, html = self._rendered(subscription.channel, data)
        text = text.replace(_LINK, unsubscribe_url)
        data["unsubscribe_url"] = unsubscribe_url
        if subscription.channel == Channel.SMS:
            return Message(
                delivery_id=delivery_id,
                channel=Channel.SMS,
                to=subscription.contact,
                text=text,
                unsubscribe_url=unsubscribe_url,
                template=TEMPLATE_NAME,
                variant_id=subscription.variant_id,
                template_data=data,
                locale=subscription.locale,
                subscription_id=subscription.id,
                attempt=attempt,
            )
        return Message(
            delivery_id=delivery_id,
            channel=Channel.EMAIL,
            to=subscription.contact,
            subject=(subject or "").replace(_LINK, unsubscribe_url),
            text=text,
            html=(html or "").replace(_LINK, str(markupsafe.escape(unsubscribe_url))),
            unsubscribe_url=unsubscribe_url,
            template=TEMPLATE_NAME,
            variant_id=subscription.variant_id,
            # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the URL
            headers={
                "List-Unsubscribe": f"<{unsubscribe_post_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            template_data=data,
            locale=subscription.locale,
            subscription_id=subscription.id,
            attempt=attempt,
        )
