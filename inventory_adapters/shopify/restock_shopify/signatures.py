"""Shopify's two signatures (reference/shopify-magento.md §1.3; Shopify's app proxy docs):

- webhooks: base64(HMAC-SHA256(client secret, raw body)) in `X-Shopify-Hmac-Sha256`;
- app proxy: hex(HMAC-SHA256(client secret, sorted "key=value" strings joined with nothing,
  multi-values joined with ",", `signature` left out)) in the `signature` query parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence


def webhook_signature(raw_body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_webhook(raw_body: bytes, header_value: str | None, secret: str) -> bool:
    if not header_value:
        return False
    expected = webhook_signature(raw_body, secret).encode()
    return hmac.compare_digest(expected, header_value.strip().encode())


def _grouped(params: Iterable[tuple[str, str]] | Mapping[str, Sequence[str] | str]) -> dict:
    grouped: dict[str, list[str]] = {}
    items = params.items() if isinstance(params, Mapping) else params
    for key, value in items:
        values = [value] if isinstance(value, str) else list(value)
        grouped.setdefault(key, []).extend(values)
    return grouped


def proxy_message(params: Iterable[tuple[str, str]] | Mapping[str, Sequence[str] | str]) -> str:
    grouped = _grouped(params)
    parts = [f"{key}={','.join(values)}" for key, values in grouped.items() if key != "signature"]
    return "".join(sorted(parts))


def proxy_signature(
    params: Iterable[tuple[str, str]] | Mapping[str, Sequence[str] | str], secret: str
) -> str:
    message = proxy_message(params).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_proxy(params: Sequence[tuple[str, str]], secret: str) -> bool:
    given = [value for key, value in params if key == "signature"]
    if len(given) != 1 or not given[0]:
        return False
    expected = proxy_signature(params, secret)
    return hmac.compare_digest(expected.encode(), given[0].strip().lower().encode())
