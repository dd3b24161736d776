"""A sign-up as it arrives from any surface (HTTP, CLI, library, a plugin's route), checked.

`SignUpRequest` is the single home of the field limits: the HTTP model takes its
`max_length`s from here and a test checks the database columns against them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ValidationError

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
        return cls(
            variant_id=check_id(variant_id, "variant_id"),
            scope="default" if scope is None else check_id(scope, "scope"),
            email=email,
            phone=phone,
            channel=channel,
            source=source,
            attributes=dict(attributes or {}),
            **{name: optional_text(value, name) for name, value in texts.items()},
        )


#: the optional free texts of a sign-up (snapshots and ids from the shop)
TEXT_FIELDS = ("customer_id", "product_id", "locale", "product_title", "variant_title", "url")


def max_length(name: str) -> int:
    """The limit of a `SignUpRequest` field."""
    limit: int = attrs.fields_dict(SignUpRequest)[name].metadata[MAX_LENGTH]
    return limit


def check_id(value: Any, field: str) -> str:
    """A non-empty id (variant, scope), stripped, within its limit."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    value = value.strip()
    limit = max_length(field)
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", field=field)
    return value


def optional_text(value: Any, field: str) -> str | None:
    if field not in TEXT_FIELDS:
        raise TypeError(f"unexpected sign-up field {field!r}")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    limit = attrs.fields_dict(SignUpRequest)[field].metadata.get(MAX_LENGTH)
    if limit is not None and len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", field=field)
    return value
