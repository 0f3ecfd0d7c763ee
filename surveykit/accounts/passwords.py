"""Password hashing with argon2id (argon2-cffi) and the password rules."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong username costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("surveykit-timing-equaliser")

MAX_PASSWORD_LENGTH = 1024


class PasswordRejected(ValueError):
    pass


def check_password_rules(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise PasswordRejected(f"password must be at least {min_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password or not password.strip():
        raise PasswordRejected("password must not start or end with white space")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
