"""Contact validation and normalisation: one spelling per person, so the database's
one-pending-per-contact rule cannot be dodged with upper case or a local phone format."""

from __future__ import annotations

import re
from collections.abc import Collection

import email_validator
import phonenumbers

from .errors import ValidationError
from .models import Channel

#: the common address: a dot-atom local part of letters, digits and ``_+-``, and a domain of
#: LDH labels under an alphabetic top-level domain. Every such address (within the lengths
#: checked below, without ``--`` in the domain and outside the special-use domains) is one
#: `email_validator` accepts and spells as given with the domain lower-cased, so
#: `normalize_email` answers it without the validator (a sixth of a sign-up's CPU time);
#: tests/test_signup.py checks the two agree on generated addresses
_SIMPLE_EMAIL = re.compile(
    r"[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)


def _simple_email(value: str) -> str | None:
    """`value` lower-cased when it is a common address `email_validator` would accept as
    is (see `_SIMPLE_EMAIL`), else None (ask the validator)."""
    match = _SIMPLE_EMAIL.fullmatch(value)
    if match is None or len(value) > 254 or value.index("@") > 64:
        return None
    domain = match.group(1).lower()
    if "--" in domain:
        return None
    for special in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        if domain == special or domain.endswith("." + special):
            return None
    return value.lower()


def normalize_email(value: str) -> str:
    value = value.strip()
    simple = _simple_email(value)
    if simple is not None:
        return simple
    try:
        result = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(f"invalid email address: {exc}", field="email") from None
    # domain part is case-insensitive; the local part is kept but lower-cased as every
    # major provider treats it case-insensitively
    return result.normalized.lower()


def email_key(value: str) -> str | None:
    """The spelling `normalize_email` gives a valid address, or None for an invalid one;
    cheap for plain ASCII addresses (orders by the hundred thousand are matched with it)."""
    value = value.strip()
    if value.isascii() and value.count("@") == 1 and " " not in value:
        local, _, domain = value.partition("@")
        if local and "." in domain and not local.startswith('"'):
            return value.lower()
    try:
        return normalize_email(value)
    except ValidationError:
        return None


def normalize_phone(value: str, region: str | None = None) -> str:
    """Return E.164 (+14155550100). Numbers without a + need a region."""
    try:
        number = phonenumbers.parse(value.strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            f"invalid phone number {value!r}: {exc}; use E.164 such as +14155550100",
            field="phone",
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            f"invalid phone number {value!r}; use E.164 such as +14155550100", field="phone"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def resolve_contact(
    email: str | None, phone: str | None, channel: str | None, *, region: str | None = None
) -> tuple[Channel, str]:
    """Pick the channel and its normalised contact from what the shopper gave. `region`
    (ISO 3166 alpha-2) reads a national phone number (no +) as a number of that country."""
    if channel is not None:
        try:
            chosen = Channel(channel)
        except ValueError:
            raise ValidationError(
                f"unknown channel {channel!r}; use 'email' or 'sms'", field="channel"
            ) from None
    elif email:
        chosen = Channel.EMAIL
    elif phone:
        chosen = Channel.SMS
    else:
        raise ValidationError("give an email or a phone number", field="email")
    if chosen == Channel.EMAIL:
        if not email:
            raise ValidationError("channel 'email' needs an email address", field="email")
        return chosen, normalize_email(email)
    if not phone:
        raise ValidationError("channel 'sms' needs a phone number", field="phone")
    return chosen, normalize_phone(phone, region)


#: number types that can receive SMS; premium-rate, shared-cost, toll-free, fixed-line, VoIP,
#: pager, UAN and voicemail numbers are refused (SMS pumping: fraudsters sign premium-rate
#: numbers up and collect the termination fees)
SMS_NUMBER_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def check_sms_number(e164: str, countries: Collection[str] = ()) -> None:
    """Refuse an SMS sign-up for a number that is not a mobile number, or (when `countries`
    is not empty) one outside those regions. `e164` is already normalised."""
    number = phonenumbers.parse(e164)
    kind = phonenumbers.number_type(number)
    if kind not in SMS_NUMBER_TYPES:
        name = _TYPE_NAMES.get(kind, "non-mobile")
        raise ValidationError(
            f"SMS sign-ups need a mobile number; this is a {name} number", field="phone"
        )
    if countries:
        region = phonenumbers.region_code_for_number(number)
        if region not in countries:
            raise ValidationError(
                "SMS sign-ups are accepted for numbers in " + ", ".join(sorted(countries)),
                field="phone",
            )


_TYPE_NAMES = {
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium-rate",
    phonenumbers.PhoneNumberType.TOLL_FREE: "toll-free",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared-cost",
    phonenumbers.PhoneNumberType.FIXED_LINE: "fixed-line",
    phonenumbers.PhoneNumberType.VOIP: "VoIP",
    phonenumbers.PhoneNumberType.PAGER: "pager",
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER: "personal (forwarding)",
    phonenumbers.PhoneNumberType.UAN: "UAN",
    phonenumbers.PhoneNumberType.VOICEMAIL: "voicemail",
}
