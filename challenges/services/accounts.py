"""Accounts: e-mail verification by signed link and the participant's API token.

Verification needs no table: the link carries ``{user id, address}`` signed with the project's
``SECRET_KEY`` under a salt used for nothing else (``TimestampSigner``), valid for
``SCANBENCH_EMAIL_VERIFY_MAX_AGE_S``. A verified address is recorded as membership of the group
``verified-email`` (an existing table, no migration; visible and editable in the admin). The link
names the address it was sent to, so it stops working once the account's address changes.

The API token is DRF's ``authtoken.Token``: one per user (its ``user`` is one-to-one), sent as
``Authorization: Token <key>``. Rotating deletes the old key and creates a new one in one
transaction, so the old key stops working at once.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from rest_framework.authtoken.models import Token

logger = logging.getLogger(__name__)

VERIFIED_EMAIL_GROUP = "verified-email"
_VERIFY_SALT = "scanbench.accounts.email-verification"


class EmailVerificationError(Exception):
    """A verification link that is tampered with, expired or no longer matches the account."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def email_is_verified(*, user: User) -> bool:
    return bool(user.email) and user.groups.filter(name=VERIFIED_EMAIL_GROUP).exists()


def email_verification_token(*, user: User) -> str:
    """A signed, timestamped token naming the user and the address it is sent to."""
    signer = signing.TimestampSigner(salt=_VERIFY_SALT)
    return signer.sign_object({"u": user.pk, "e": user.email.lower()}, compress=True)


def email_verification_send(*, user: User) -> bool:
    """Mail the verification link to the user's address. Returns False (and logs) when the mail
    could not be handed to the mail server: the account works anyway and the profile page can
    send the link again."""
    if not user.email:
        return False
    path = reverse("challenges:verify-email", kwargs={"token": email_verification_token(user=user)})
    hours = settings.SCANBENCH_EMAIL_VERIFY_MAX_AGE_S // 3600
    try:
        send_mail(
            "[Scanbench] Confirm your e-mail address",
            f"Hello {user.username},\n\nplease confirm that this is your address by opening this "
            f"link within {hours} hours:\n\n{settings.SCANBENCH_SITE_URL}{path}\n\n"
            "If you did not create a Scanbench account, ignore this message.",
            settings.DEFAULT_FROM_EMAIL,
            [user.email],
        )
    except Exception:  # any mail-server fault; the link can be sent again from the profile
        logger.exception("verification mail to user %s failed", user.pk)
        return False
    return True


@transaction.atomic
def email_verify(*, token: str) -> User:
    """Mark the address the token names as verified, and return its user.

    Raises ``EmailVerificationError`` (``code`` ``expired``, ``invalid`` or ``changed``)."""
    signer = signing.TimestampSigner(salt=_VERIFY_SALT)
    try:
        data = signer.unsign_object(token, max_age=settings.SCANBENCH_EMAIL_VERIFY_MAX_AGE_S)
    except signing.SignatureExpired as exc:
        raise EmailVerificationError(
            "This confirmation link has expired. Log in and send a new one from your profile.",
            code="expired",
        ) from exc
    except signing.BadSignature as exc:
        raise EmailVerificationError(
            "This confirmation link is not valid. Copy the whole link from the mail, or send a "
            "new one from your profile.",
            code="invalid",
        ) from exc
    user = User.objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or user.email.lower() != data.get("e"):
        raise EmailVerificationError(
            "This confirmation link was sent to an address the account no longer has. Send a "
            "new one from your profile.",
            code="changed",
        )
    group, _ = Group.objects.get_or_create(name=VERIFIED_EMAIL_GROUP)
    user.groups.add(group)
    return user


def email_unverify(*, user: User) -> None:
    """Forget the verification (call when the address changes)."""
    user.groups.remove(*Group.objects.filter(name=VERIFIED_EMAIL_GROUP))


def api_token_for(*, user: User) -> Token | None:
    return Token.objects.filter(user=user).first()


@transaction.atomic
def api_token_rotate(*, user: User) -> Token:
    """Create the user's API token, replacing (and so invalidating) any existing one. The
    returned token's ``key`` is the only time the caller sees the whole key on a page."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


@transaction.atomic
def api_token_revoke(*, user: User) -> bool:
    """Delete the user's API token; False when there was none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0
