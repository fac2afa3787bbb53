"""Usernames that look alike are the same name.

Leaderboards show usernames, so ``alice`` written with a Cyrillic ``a``, ``ALICE`` and
``alice`` with a fullwidth ``a`` must not be able to stand beside ``alice``. Names are
compared by their *key*: Unicode NFKC normalisation (fullwidth and compatibility forms), then
the common Cyrillic and Greek look-alikes of Latin letters and digits mapped to those letters
(a short table in the spirit of Unicode TS #39's confusables, not all of it), then case folding.
"""

from __future__ import annotations

import unicodedata

from django.contrib.auth import get_user_model

# Look-alike -> the Latin letter or digit it imitates, upper and lower case kept apart because
# the same shape can mean different letters in each case (Greek capital eta is H, its small
# letter reads as n).
_CONFUSABLES: dict[str, str] = {
    # Cyrillic capitals
    "\N{CYRILLIC CAPITAL LETTER A}": "A",
    "\N{CYRILLIC CAPITAL LETTER VE}": "B",
    "\N{CYRILLIC CAPITAL LETTER IE}": "E",
    "\N{CYRILLIC CAPITAL LETTER ZE}": "3",
    "\N{CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I}": "I",
    "\N{CYRILLIC CAPITAL LETTER JE}": "J",
    "\N{CYRILLIC CAPITAL LETTER KA}": "K",
    "\N{CYRILLIC CAPITAL LETTER EM}": "M",
    "\N{CYRILLIC CAPITAL LETTER EN}": "H",
    "\N{CYRILLIC CAPITAL LETTER O}": "O",
    "\N{CYRILLIC CAPITAL LETTER ER}": "P",
    "\N{CYRILLIC CAPITAL LETTER ES}": "C",
    "\N{CYRILLIC CAPITAL LETTER DZE}": "S",
    "\N{CYRILLIC CAPITAL LETTER TE}": "T",
    "\N{CYRILLIC CAPITAL LETTER HA}": "X",
    "\N{CYRILLIC CAPITAL LETTER U}": "Y",
    "\N{CYRILLIC CAPITAL LETTER STRAIGHT U}": "Y",
    "\N{CYRILLIC CAPITAL LETTER QA}": "Q",
    "\N{CYRILLIC CAPITAL LETTER WE}": "W",
    "\N{CYRILLIC LETTER PALOCHKA}": "l",
    "\N{CYRILLIC CAPITAL LETTER SOFT SIGN}": "b",
    # Cyrillic small letters
    "\N{CYRILLIC SMALL LETTER A}": "a",
    "\N{CYRILLIC SMALL LETTER VE}": "b",
    "\N{CYRILLIC SMALL LETTER IE}": "e",
    "\N{CYRILLIC SMALL LETTER ZE}": "3",
    "\N{CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I}": "i",
    "\N{CYRILLIC SMALL LETTER JE}": "j",
    "\N{CYRILLIC SMALL LETTER KA}": "k",
    "\N{CYRILLIC SMALL LETTER EM}": "m",
    "\N{CYRILLIC SMALL LETTER EN}": "h",
    "\N{CYRILLIC SMALL LETTER O}": "o",
    "\N{CYRILLIC SMALL LETTER ER}": "p",
    "\N{CYRILLIC SMALL LETTER ES}": "c",
    "\N{CYRILLIC SMALL LETTER DZE}": "s",
    "\N{CYRILLIC SMALL LETTER TE}": "t",
    "\N{CYRILLIC SMALL LETTER HA}": "x",
    "\N{CYRILLIC SMALL LETTER U}": "y",
    "\N{CYRILLIC SMALL LETTER STRAIGHT U}": "y",
    "\N{CYRILLIC SMALL LETTER QA}": "q",
    "\N{CYRILLIC SMALL LETTER WE}": "w",
    "\N{CYRILLIC SMALL LETTER PALOCHKA}": "l",
    "\N{CYRILLIC SMALL LETTER SHHA}": "h",
    "\N{CYRILLIC SMALL LETTER KOMI DE}": "d",
    "\N{LATIN SMALL LETTER SCRIPT G}": "g",
    "\N{CYRILLIC SMALL LETTER SOFT SIGN}": "b",
    "\N{CYRILLIC SMALL LETTER PE}": "n",
    # Greek capitals
    "\N{GREEK CAPITAL LETTER ALPHA}": "A",
    "\N{GREEK CAPITAL LETTER BETA}": "B",
    "\N{GREEK CAPITAL LETTER EPSILON}": "E",
    "\N{GREEK CAPITAL LETTER ZETA}": "Z",
    "\N{GREEK CAPITAL LETTER ETA}": "H",
    "\N{GREEK CAPITAL LETTER IOTA}": "I",
    "\N{GREEK CAPITAL LETTER KAPPA}": "K",
    "\N{GREEK CAPITAL LETTER MU}": "M",
    "\N{GREEK CAPITAL LETTER NU}": "N",
    "\N{GREEK CAPITAL LETTER OMICRON}": "O",
    "\N{GREEK CAPITAL LETTER RHO}": "P",
    "\N{GREEK CAPITAL LETTER TAU}": "T",
    "\N{GREEK CAPITAL LETTER UPSILON}": "Y",
    "\N{GREEK CAPITAL LETTER CHI}": "X",
    # Greek small letters
    "\N{GREEK SMALL LETTER ALPHA}": "a",
    "\N{GREEK SMALL LETTER BETA}": "b",
    "\N{GREEK SMALL LETTER GAMMA}": "y",
    "\N{GREEK SMALL LETTER EPSILON}": "e",
    "\N{GREEK SMALL LETTER IOTA}": "i",
    "\N{GREEK SMALL LETTER KAPPA}": "k",
    "\N{GREEK SMALL LETTER NU}": "v",
    "\N{GREEK SMALL LETTER OMICRON}": "o",
    "\N{GREEK SMALL LETTER RHO}": "p",
    "\N{GREEK SMALL LETTER TAU}": "t",
    "\N{GREEK SMALL LETTER UPSILON}": "u",
    "\N{GREEK SMALL LETTER CHI}": "x",
    "\N{GREEK SMALL LETTER OMEGA}": "w",
    "\N{GREEK SMALL LETTER ETA}": "n",
    # Digits that read as letters
    "\N{DIGIT ZERO}": "o",
    "\N{DIGIT ONE}": "l",
}
_TABLE = str.maketrans(_CONFUSABLES)


def username_key(username: str) -> str:
    """The form two usernames are compared in: equal keys mean the names look alike."""
    return unicodedata.normalize("NFKC", username).translate(_TABLE).casefold()


def username_lookalike(*, username: str, exclude_pk: int | None = None) -> str | None:
    """An existing username that looks like ``username`` (itself included), or None.

    Reads every username once (the key cannot be computed in SQL on both SQLite and PostgreSQL
    without a stored column); sign-ups are rare enough for that to be cheap.
    """
    key = username_key(username)
    users = get_user_model().objects.all()
    if exclude_pk is not None:
        users = users.exclude(pk=exclude_pk)
    for existing in users.values_list("username", flat=True).iterator(chunk_size=5000):
        if username_key(existing) == key:
            return str(existing)
    return None
