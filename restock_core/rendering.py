"""Default message templates (Jinja2). A `templates` directory in the settings overrides
any of them by file name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from .models import Channel, Message, Subscription, VariantInfo

TEMPLATE_NAME = "restock"


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
        data = self.template_data(subscription, info, unsubscribe_url)
        if subscription.channel == Channel.SMS:
            return Message(
                delivery_id=delivery_id,
                channel=Channel.SMS,
                to=subscription.contact,
                text=self._sms.render(data).strip(),
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
            subject=" ".join(self._subject.render(data).split()),
            text=self._text.render(data),
            html=self._html.render(data),
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


def template_names() -> list[str]:
    return sorted(p.name for p in (Path(__file__).parent / "templates").iterdir())
