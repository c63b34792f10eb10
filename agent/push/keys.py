"""The agent's VAPID key pair (RFC 8292): made at first start, kept 0600 in the data directory.

Browsers bind each push subscription to the public key they were given, so a new key
makes every stored subscription useless: the key file is never replaced silently.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

log = logging.getLogger("ringboard.push")

KEY_FILE_NAME = "vapid_private_key.pem"
KEY_FILE_MODE = 0o600

# Lifetime of a signed VAPID token. RFC 8292 allows at most 24 hours, and Apple's push
# service rejects tokens that expire more than a day ahead; 12 hours stays clear of both.
TOKEN_LIFETIME = 12 * 3600

# A cached token is signed again when less than this is left of its lifetime, so no
# request carries a token that expires while it travels or waits for a retry.
TOKEN_RENEW_BEFORE = 3600


class PushKeyError(RuntimeError):
    """The VAPID key file cannot be read or made; the message names the file and the fix."""


def b64url(data: bytes) -> str:
    """Encode bytes as base64url without padding, as Web Push keys are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raise ValueError when it is not base64url."""
    if not isinstance(text, str) or not text or any(ch in text for ch in "+/ \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class VapidKey:
    """The application server key pair; `public_key` is what `GET /api/push/key` returns."""

    vapid: Vapid
    public_key: str
    path: Path


def load_or_create_vapid_key(data_dir: Path) -> VapidKey:
    """Read the key pair from the data directory, making it on first start."""
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Written under a temporary name with 0600 from the start, then linked into place,
    # which fails rather than overwrite a key another process made meanwhile.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(pem)
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return
    except OSError as error:
        raise PushKeyError(f"cannot write the VAPID key {path}: {error.strerror}; check that the data directory is writable") from error
    finally:
        temporary.unlink(missing_ok=True)
    log.info("made a new VAPID key pair in %s", path)


def _read_key_file(path: Path) -> VapidKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("VAPID key %s was readable by others (mode %o); set to 0600", path, mode)
        os.chmod(path, KEY_FILE_MODE)

    try:
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise PushKeyError(
            f"cannot read the VAPID key {path} ({error}); restore it from a backup, or delete it to make a new one "
            "(every browser must then turn notifications on again)"
        ) from error
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(private_key.curve, ec.SECP256R1):
        raise PushKeyError(f"the VAPID key {path} is not a P-256 key; delete it to make a new one")

    public_point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return VapidKey(vapid=Vapid(private_key=private_key), public_key=b64url(public_point), path=path)


class VapidSigner:
    """Sign RFC 8292 `Authorization: vapid t=…, k=…` headers, one cached token per push service."""

    def __init__(self, key: VapidKey, contact: str) -> None:
        self.key = key
        self.contact = contact
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()  # Signing runs on the sender threads.

    def authorization(self, endpoint: str, now: float | None = None) -> str:
        """Return the Authorization header value for a request to `endpoint`."""
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time() if now is None else now
        with self._lock:
            cached = self._tokens.get(audience)
            if cached is not None and cached[1] - now > TOKEN_RENEW_BEFORE:
                return cached[0]
            expires = int(now) + TOKEN_LIFETIME
            claims = {"aud": audience, "exp": expires, "sub": self.contact}
            header = self.key.vapid.sign(claims)["Authorization"]
            self._tokens[audience] = (header, float(expires))
            return header
