"""PII scrubbing (step "pii"): e-mail addresses, phone numbers, Chinese resident ID numbers, IPs.

Each kind is replaced by an ASCII placeholder that later steps leave alone (normalization only
touches full-width forms, controls and whitespace; no filter rule matches them):

    <EMAIL>    user@example.com, 张三.li@mail.example.cn
    <PHONE>    Chinese mobiles 13812345678, 138-1234-5678, 138 1234 5678, +86 138..., 0086-138...;
               Chinese landlines 010-12345678, (0755) 1234-5678, 021-1234567-801;
               international numbers written with a +: +1 415 555 2671, +44 20 7946 0958,
               +86-10-12345678 (8-15 digits, E.164's range); North-American 415-555-2671
    <ID_CARD>  18-character resident ID numbers (GB 11643-1999) whose ISO 7064 MOD 11-2 check
               character is right, whose region code starts with a real province code and whose
               birth date exists and is not in the future
    <IP>       IPv4 with octets 0-255 and no leading zeros; IPv6 that Python's ipaddress accepts

Matching is deliberately conservative: a missed number is one bit of PII in a crawl, while a false
match damages ordinary text (prices, dates, ISBNs, version numbers, order numbers). So:
  - every pattern refuses to start or end inside a longer run of digits/letters;
  - an 18-digit number is an ID only with a valid checksum AND date AND province (a random
    18-digit number passes all three about once in ~3,000 tries);
  - a mobile number needs 1[3-9] and exactly 11 digits; a landline needs its area code set off by
    "-", a space or parentheses (a bare 0+10 digits is more often an order number);
  - IPv4 needs exactly four dot-separated octets and no "v"/"version"/"版本" right before it,
    so 1.2.3, 2024.01.15 and v1.2.3.4 are not addresses; IPv6 needs a group of 3-4 hex digits
    so "a::b" (C++) and times such as 12:30:45 never match.
doc.meta["pii"] gets {"email": n, "phone": n, "id_card": n, "ip": n} with the kinds found (absent when
none). With replace=False the text is left as is and only the counts are recorded.
Run it after Normalize: the patterns are ASCII, and normalization is what turns full-width
digits and ＠ (１３８１２３４５６７８, ａｂｃ＠ｅｘａｍｐｌｅ．ｃｏｍ) into ASCII.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import replace as replace_doc

from baichuan.data.document import Document

PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "id_card": "<ID_CARD>", "ip": "<IP>"}

# Boundaries are ASCII-only on purpose: Chinese writes numbers and addresses right against Han
# characters (电话13812345678, 邮箱abc@example.com), and \w would count those as word characters.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9_-])")

# -- Chinese resident ID -------------------------------------------------------------------------
_ID_CARD = re.compile(
    r"(?<![0-9A-Za-z])([1-9]\d{5})((?:18|19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# Province-level codes (GB/T 2260): the first two digits of every real ID number.
_PROVINCES = frozenset("11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
                       "61 62 63 64 65 71 81 82 83 91".split())


def id_card_valid(number: str, today: datetime.date | None = None) -> bool:
    """An 18-character Chinese resident ID: province code, real birth date, MOD 11-2 checksum."""
    if len(number) != 18 or not number[:17].isdigit() or number[:2] not in _PROVINCES:
        return False
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if born > (today or datetime.date.today()) or born.year < 1880:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


# -- phones --------------------------------------------------------------------------------------
_NOT_AFTER_ALNUM = r"(?<![A-Za-z0-9_+])"
_NOT_BEFORE_ALNUM = r"(?![A-Za-z0-9_])"
_CN_MOBILE = (r"(?:(?:\+|00)86[ -]?)?"            # +86 / 0086, optionally separated
              r"1[3-9]\d(?:[ -]?\d{4}){2}")       # 138 1234 5678 / 138-1234-5678 / 13812345678
_CN_LANDLINE = r"(?:\(0\d{2,3}\)[ -]?|0\d{2,3}[ -])\d{3,4}[ -]?\d{4}(?:-\d{1,4})?"
_INTERNATIONAL = r"\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,6}"
_NANP = r"(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[-.])[2-9]\d{2}[-.]\d{4}"   # area and exchange start 2-9
_PHONE = re.compile(f"{_NOT_AFTER_ALNUM}(?:{_CN_MOBILE}|{_CN_LANDLINE}|{_INTERNATIONAL}|{_NANP}){_NOT_BEFORE_ALNUM}")
_DIGIT = re.compile(r"\d")

# -- IP addresses --------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![A-Za-z0-9_.])(?<!version )(?<!版本)(?<!版本 )(?<!版本号){_OCTET}(?:\.{_OCTET}){{3}}"
                   r"(?!\.?[A-Za-z0-9_])", re.IGNORECASE)
_IPV6 = re.compile(r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![A-Za-z0-9_:])")
_HEX_GROUP = re.compile(r"[0-9A-Fa-f]{3,4}")


def _ipv6_valid(candidate: str) -> bool:
    if not _HEX_GROUP.search(candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _phone_valid(candidate: str) -> bool:
    digits = len(_DIGIT.findall(candidate))
    if candidate.startswith("+"):
        return 8 <= digits <= 15                 # E.164: country code + subscriber, at most 15
    return digits >= 10                          # mobiles 11, landlines 10-12 (+ext), NANP 10


class PIIScrubber:
    """Step: replace (or with replace=False only count) e-mails, phones, ID numbers and IPs."""

    name = "pii"

    def __init__(self, replace: bool = True):
        self.replace = replace

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        """(text with placeholders, counts per kind found). Order matters: e-mails first (they hold
        digits and dots), then ID numbers (18 digits would otherwise look like phone parts), IPs
        (dotted digits), phones last."""
        counts: dict[str, int] = {}

        def sub(kind: str, pattern: re.Pattern, text: str, valid=None) -> str:
            def repl(m: re.Match) -> str:
                if valid is not None and not valid(m.group()):
                    return m.group()
                counts[kind] = counts.get(kind, 0) + 1
                return PLACEHOLDERS[kind]
            return pattern.sub(repl, text)

        if "@" in text:
            text = sub("email", _EMAIL, text)
        if not _DIGIT.search(text) and ":" not in text:
            return text, counts
        text = sub("id_card", _ID_CARD, text, id_card_valid)
        if "." in text:
            text = sub("ip", _IPV4, text)
        if "::" in text or text.count(":") >= 7:
            text = sub("ip", _IPV6, text, _ipv6_valid)
        text = sub("phone", _PHONE, text, _phone_valid)
        return text, counts

    def __call__(self, doc: Document) -> Document:
        text, counts = self.scrub(doc.text)
        if not counts:
            return doc
        doc.meta["pii"] = counts
        return replace_doc(doc, text=text) if self.replace else doc
