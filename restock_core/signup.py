"""A sign-up as it arrives from any surface (HTTP, CLI, library, a plugin's route), checked.

`SignUpRequest` is the single home of the field limits: the HTTP model takes its
`max_length`s from here and a test checks the database columns against them."""

from __future__ import annotations

import functools
import json
import math
import re
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import attrs

from .errors import ValidationError

#: C0 control characters, DEL and lone UTF-16 surrogates: PostgreSQL refuses NUL in text and
#: surrogates in UTF-8, and none of them belongs in an id, a title or a URL
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
#: in attribute values line breaks and tabs are fine; NUL and surrogates are not
_FORBIDDEN_IN_VALUES = re.compile(r"[\x00\ud800-\udfff]")

#: `attributes` limits: nesting depth, keys in all, longest key, serialized size (bytes)
ATTRIBUTES_MAX_DEPTH = 5
ATTRIBUTES_MAX_KEYS = 100
ATTRIBUTES_MAX_KEY_LENGTH = 100
ATTRIBUTES_MAX_BYTES = 8192

#: metadata key holding a field's longest accepted length
MAX_LENGTH = "max_length"


def _limit(n: int) -> dict[str, int]:
    return {MAX_LENGTH: n}


@attrs.frozen
class SignUpRequest:
    """The fields of one sign-up, before the contact is resolved and the adapter asked."""

    variant_id: str = attrs.field(metadata=_limit(255))
    email: str | None = attrs.field(default=None, metadata=_limit(320))
    phone: str | None = attrs.field(default=None, metadata=_limit(40))
    channel: str | None = None
    scope: str = attrs.field(default="default", metadata=_limit(255))
    source: str | None = attrs.field(default=None, metadata=_limit(100))
    customer_id: str | None = attrs.field(default=None, metadata=_limit(255))
    product_id: str | None = attrs.field(default=None, metadata=_limit(255))
    locale: str | None = attrs.field(default=None, metadata=_limit(35))
    product_title: str | None = attrs.field(default=None, metadata=_limit(500))
    variant_title: str | None = attrs.field(default=None, metadata=_limit(500))
    url: str | None = attrs.field(default=None, metadata=_limit(2000))
    attributes: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def parse(
        cls,
        variant_id: Any,
        *,
        email: Any = None,
        phone: Any = None,
        channel: Any = None,
        source: Any = None,
        scope: Any = None,
        attributes: Any = None,
        **texts: Any,
    ) -> SignUpRequest:
        """Check raw values: ids are non-empty strings (stripped), optional texts are
        strings, nothing is longer than its limit. Raises `ValidationError` naming the field.
        The contact (email, phone, channel) is checked and normalised by
        :func:`restock_core.contacts.resolve_contact`, the source against the configuration."""
        if attributes is not None and not isinstance(attributes, Mapping):
            raise ValidationError("attributes must be an object", field="attributes")
        for name, value in (("email", email), ("phone", phone), ("channel", channel)):
            if value is not None:
                check_text(value, name)
        if source is not None:
            check_text(source, "source")
        checked_attributes = check_attributes(attributes or {})
        return cls(
            variant_id=check_id(variant_id, "variant_id"),
            scope="default" if scope is None else check_id(scope, "scope"),
            email=email,
            phone=phone,
            channel=channel,
            source=source,
            attributes=checked_attributes,
            **{name: optional_text(value, name) for name, value in texts.items()},
        )


#: the optional free texts of a sign-up (snapshots and ids from the shop)
TEXT_FIELDS = ("customer_id", "product_id", "locale", "product_title", "variant_title", "url")


#: the sign-up fields that end up in a message: only trusted callers may set them
CONTENT_FIELDS = ("product_title", "variant_title", "url")


def check_message_url(url: str, field: str, allowed_hosts: Collection[str] = ()) -> str:
    """A URL that may be put into a message: http(s) with a host, on one of
    `allowed_hosts` when that is not empty."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise ValidationError(f"{field} is not a valid URL", field=field) from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValidationError(f"{field} must be an http(s) URL with a host", field=field)
    if allowed_hosts and host not in {h.lower() for h in allowed_hosts}:
        raise ValidationError(
            f"{field} must point at one of the allowed hosts (allowed_url_hosts)", field=field
        )
    return url


@functools.cache
def max_length(name: str) -> int:
    """The limit of a `SignUpRequest` field, or of a `SignUpContext` one (``consent_text``,
    ``consent_version``, ``honeypot``)."""
    fields = attrs.fields_dict(SignUpRequest)
    if name not in fields:
        fields = attrs.fields_dict(SignUpContext)
    limit: int = fields[name].metadata[MAX_LENGTH]
    return limit


def check_text(value: Any, field: str) -> str:
    """`value` as a string without control characters (NUL, line breaks, DEL) or lone
    surrogates; ValidationError naming `field` otherwise."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    if _FORBIDDEN.search(value):
        raise ValidationError(f"{field} must not contain control characters", field=field)
    return value


def check_attributes(value: Mapping[str, Any]) -> dict[str, Any]:
    """Free-form sign-up attributes, bounded: objects at most `ATTRIBUTES_MAX_DEPTH` deep,
    at most `ATTRIBUTES_MAX_KEYS` keys in all, `ATTRIBUTES_MAX_BYTES` serialized; JSON
    values only (no NaN/Infinity), no NUL or lone surrogates in any string."""
    keys = 0

    def walk(node: Any, depth: int, where: str) -> None:
        nonlocal keys
        if depth > ATTRIBUTES_MAX_DEPTH:
            raise ValidationError(
                f"attributes are nested deeper than {ATTRIBUTES_MAX_DEPTH} levels",
                field="attributes",
            )
        if isinstance(node, Mapping):
            for key, item in node.items():
                keys += 1
                if keys > ATTRIBUTES_MAX_KEYS:
                    raise ValidationError(
                        f"attributes have more than {ATTRIBUTES_MAX_KEYS} keys", field="attributes"
                    )
                if not isinstance(key, str) or len(key) > ATTRIBUTES_MAX_KEY_LENGTH:
                    raise ValidationError(
                        f"attribute keys are strings of at most {ATTRIBUTES_MAX_KEY_LENGTH} "
                        "characters",
                        field=f"{where}",
                    )
                check_text(key, where)
                walk(item, depth + 1, f"{where}.{key}")
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item, depth + 1, where)
        elif isinstance(node, str):
            if _FORBIDDEN_IN_VALUES.search(node):
                raise ValidationError(f"{where} must not contain NUL characters", field=where)
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValidationError(f"{where} must be a finite number", field=where)
        elif node is not None and not isinstance(node, bool | int):
            raise ValidationError(f"{where} must be a JSON value", field=where)

    if not value:
        return {}
    walk(value, 1, "attributes")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > ATTRIBUTES_MAX_BYTES:
        raise ValidationError(
            f"attributes are larger than {ATTRIBUTES_MAX_BYTES} bytes", field="attributes"
        )
    return dict(value)


def check_id(value: Any, field: str) -> str:
    """A non-empty id (variant, scope), stripped, within its limit, without control
    characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    value = check_text(value.strip(), field)
    limit = max_length(field)
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", field=field)
    return value


def optional_text(value: Any, field: str) -> str | None:
    if field not in TEXT_FIELDS:
        raise TypeError(f"unexpected sign-up field {field!r}")
    if value is None:
        return None
    check_text(value, field)
    limit = max_length(field)
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", field=field)
    return value


@attrs.frozen
class SignUpContext:
    """Who sent a sign-up and what the form said beside the sign-up fields: what
    ``before_subscribe`` plugins judge and what the consent record keeps.

    `trusted` callers (the library, the CLI, a secret or admin key) skip the abuse limits
    and the hook; public ones (a shopper's browser) do not."""

    trusted: bool = True
    ip: str | None = None
    user_agent: str | None = None
    #: the built-in honeypot field (``hp``): people leave it empty, form-filling bots do not
    honeypot: str | None = attrs.field(default=None, metadata=_limit(500))
    consent_text: str | None = attrs.field(default=None, metadata=_limit(2000))
    consent_version: str | None = attrs.field(default=None, metadata=_limit(100))
    #: other form fields, for plugins (e.g. ``{"cf-turnstile-response": "..."}``)
    form: Mapping[str, Any] = attrs.field(factory=dict)

    def consent_record(self) -> dict[str, str | None]:
        return {
            "ip": None if self.ip is None else self.ip[:64],
            "user_agent": None if self.user_agent is None else self.user_agent[:500],
            "text": self.consent_text,
            "version": self.consent_version,
        }


@attrs.frozen
class Veto:
    """A ``before_subscribe`` refusal. `silent` answers like a success (honeypots)."""

    reason: str
    silent: bool = False


_F = TypeVar("_F", bound=Callable[..., Any])

#: the attribute :func:`nonblocking` sets on a hook implementation
NONBLOCKING = "restock_nonblocking"


def nonblocking(function: _F) -> _F:
    """Mark a ``before_subscribe`` implementation as one that never blocks (no network, no
    database, no sleep: it only looks at the request and context, like the built-in
    honeypot). The HTTP sign-up route then calls it on its event loop; while any
    implementation is not marked, the route runs the whole pre-write part of the sign-up
    in the thread pool instead, so a slow CAPTCHA check cannot stall other requests.
    Put it under ``@hookimpl``::

        @hookimpl
        @nonblocking
        def before_subscribe(request, context): ...
    """
    setattr(function, NONBLOCKING, True)
    return function


def is_nonblocking(function: Callable[..., Any]) -> bool:
    """Whether `function` (a hook implementation, maybe a bound method) is marked
    :func:`nonblocking`."""
    return bool(getattr(function, NONBLOCKING, False))
