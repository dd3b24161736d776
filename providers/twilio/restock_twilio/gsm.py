"""SMS text encoding: fold typographic punctuation to GSM-7 and count segments.

An SMS body that holds one character outside the GSM 03.38 alphabet is sent as UCS-2: 70
characters per single message instead of 160, 67 per part instead of 153 once it is split
(https://www.twilio.com/docs/glossary/what-sms-character-limit). Titles copied from a shop
often carry a curly apostrophe or an en dash, which alone turns a 2-segment SMS into 3.
:func:`fold_to_gsm7` replaces such punctuation with its plain GSM-7 look-alike, as Twilio's
Smart Encoding does (https://www.twilio.com/docs/messaging/services#smart-encoding), and
leaves real non-GSM letters (Cyrillic, CJK, emoji) alone: those need UCS-2 and keep it.
"""

from __future__ import annotations

import attrs

#: GSM 03.38 basic character set (one septet each); "\x1b" is the escape to the extension
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table: two septets each (escape + character)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

#: typographic characters and their GSM-7 replacements (Twilio Smart Encoding's table, for
#: punctuation and spaces; letters with diacritics are not touched)
FOLD = {
    "\u2018": "'",  # ‘ left single quotation mark
    "\u2019": "'",  # ’ right single quotation mark / typographic apostrophe
    "\u201a": "'",  # ‚ single low-9 quotation mark
    "\u201b": "'",  # ‛ single high-reversed-9 quotation mark
    "\u2032": "'",  # ′ prime
    "\u2035": "'",  # ‵ reversed prime
    "\u02bc": "'",  # ʼ modifier letter apostrophe
    "\u02b9": "'",  # ʹ modifier letter prime
    "\u2039": "'",  # ‹
    "\u203a": "'",  # ›
    "\u201c": '"',  # “
    "\u201d": '"',  # ”
    "\u201e": '"',  # „
    "\u201f": '"',  # ‟
    "\u2033": '"',  # ″ double prime
    "\u2036": '"',  # ‶
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u02ba": '"',  # ʺ
    "\u2010": "-",  # ‐ hyphen
    "\u2011": "-",  # ‑ non-breaking hyphen
    "\u2012": "-",  # ‒ figure dash
    "\u2013": "-",  # – en dash
    "\u2014": "-",  # — em dash
    "\u2015": "-",  # ― horizontal bar
    "\u2212": "-",  # − minus sign
    "\u00ad": "",  # soft hyphen
    "\u2026": "...",  # … ellipsis
    "\u2022": "-",  # • bullet
    "\u00a0": " ",  # no-break space
    "\u2000": " ",
    "\u2001": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u2004": " ",
    "\u2005": " ",
    "\u2006": " ",
    "\u2007": " ",
    "\u2008": " ",
    "\u2009": " ",  # thin space
    "\u200a": " ",  # hair space
    "\u202f": " ",  # narrow no-break space
    "\u205f": " ",
    "\u3000": " ",
    "\u200b": "",  # zero-width space
    "\u200c": "",  # zero-width non-joiner
    "\u200d": "",  # zero-width joiner
    "\u2060": "",  # word joiner
    "\ufeff": "",  # zero-width no-break space / BOM
    "\u02c6": "^",  # ˆ
    "\u02dc": "~",  # ˜
    "\u2044": "/",  # ⁄ fraction slash
    "\u00a6": "|",  # ¦
}
_TABLE = str.maketrans(FOLD)

#: characters per message: GSM-7 septets / UCS-2 code units, single and per part of a
#: concatenated message (the user data header takes the rest)
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def fold_to_gsm7(text: str) -> str:
    """`text` with typographic punctuation and spaces replaced by GSM-7 characters."""
    return text.translate(_TABLE)


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


@attrs.frozen
class Segments:
    """How an SMS body is sent: `encoding` ("GSM-7" or "UCS-2"), `units` (septets or
    UTF-16 code units) and `count` (messages the handset receives and Twilio bills)."""

    encoding: str
    units: int
    count: int


def _pack(sizes: list[int], single: int, part: int) -> int:
    """Parts needed for characters of `sizes` units, never splitting one character
    (an escaped GSM-7 character, a UTF-16 surrogate pair) across two parts."""
    total = sum(sizes)
    if total == 0:
        return 1
    if total <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts += 1
            used = 0
        used += size
    return parts


def sms_segments(text: str) -> Segments:
    """The encoding and segment count of `text` as sent (no folding applied here)."""
    if is_gsm7(text):
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return Segments("GSM-7", sum(sizes), _pack(sizes, GSM7_SINGLE, GSM7_PART))
    sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return Segments("UCS-2", sum(sizes), _pack(sizes, UCS2_SINGLE, UCS2_PART))
