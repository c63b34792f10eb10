"""HTTPS for the page: a small local CA, the agent's server certificate, and the TLS context.

Browsers give service workers and notifications only to secure contexts, so an agent
that serves other machines needs HTTPS. Offices rarely have a certificate for an
internal host, so `ringboard tls init` makes a local CA and signs a server certificate
for the agent's names with it. Each office browser then trusts the CA once.

The CA carries X.509 name constraints that permit only the agent's own names and
addresses. A browser that trusts it therefore accepts nothing else it might sign, even
if its key, which stays in the data folder for renewals, were stolen.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("ringboard.tls")

TLS_DIR_NAME = "tls"
CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
SERVER_CERT_NAME = "server.pem"
SERVER_KEY_NAME = "server-key.pem"

# Long enough that the office trusts the CA once in a server's life.
CA_VALID_DAYS = 10 * 365
# Apple's platforms reject TLS server certificates valid for more than 825 days, and
# public CAs may issue at most 398; 397 days fits both. `tls init` renews it.
SERVER_VALID_DAYS = 397
# `doctor` warns when a certificate ends sooner than this.
EXPIRY_WARNING_DAYS = 30
# Certificates start an hour early, so a client whose clock is slightly behind accepts them.
CLOCK_SKEW = dt.timedelta(hours=1)


class TlsError(RuntimeError):
    """A certificate or key cannot be used; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The paths of the local CA and the server certificate in the folder `tls init` writes."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT_NAME

    @property
    def ca_key(self) -> Path:
        return self.directory / CA_KEY_NAME

    @property
    def server_cert(self) -> Path:
        return self.directory / SERVER_CERT_NAME

    @property
    def server_key(self) -> Path:
        return self.directory / SERVER_KEY_NAME


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """A certificate's subject, names and validity, as `doctor` and the logs show them."""

    subject: str
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool

    def days_left(self, now: dt.datetime | None = None) -> float:
        """Return the days until the certificate expires, negative once it has."""
        now = now or dt.datetime.now(dt.timezone.utc)
        return (self.not_after - now).total_seconds() / 86400


def default_names() -> list[str]:
    """Return this machine's host name and the loopback names, which the certificate covers by default.

    The fully qualified name and the office addresses are not guessed (that would need
    DNS); `tls init --name` adds them.
    """
    names = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname()
    if host and host not in names:
        names.insert(0, host)
    return names


def split_names(names: list[str]) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Split names into DNS names and IP addresses; raise TlsError for anything else."""
    dns: list[str] = []
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in names:
        try:
            addresses.append(ipaddress.ip_address(name))
            continue
        except ValueError:
            pass
        label = name.strip().rstrip(".").lower()
        if not label or len(label) > 253 or not all(_valid_label(part) for part in label.split(".")):
            raise TlsError(f'"{name}" is neither a host name nor an IP address')
        if label not in dns:
            dns.append(label)
    return dns, addresses


def _valid_label(label: str) -> bool:
    return 0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() and not label.startswith("-")


def create_ca(files: TlsFiles, names: list[str], now: dt.datetime | None = None) -> x509.Certificate:
    """Create the local CA, constrained to `names`, and write its certificate and key."""
    now = now or dt.datetime.now(dt.timezone.utc)
    dns, addresses = split_names(names)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ringboard"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Ringboard local CA ({socket.gethostname()})"),
        ]
    )
    permitted: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    permitted += [x509.IPAddress(ipaddress.ip_network(address)) for address in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    files.directory.mkdir(parents=True, exist_ok=True)
    _write_private(files.ca_key, _key_pem(key))
    _write_public(files.ca_cert, certificate.public_bytes(serialization.Encoding.PEM))
    return certificate


def issue_server_certificate(files: TlsFiles, names: list[str], now: dt.datetime | None = None) -> x509.Certificate:
    """Sign a server certificate for `names` with the local CA and write it with its key."""
    now = now or dt.datetime.now(dt.timezone.utc)
    dns, addresses = split_names(names)
    ca_cert, ca_key = load_ca(files)
    key = ec.generate_private_key(ec.SECP256R1())
    alternative: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    alternative += [x509.IPAddress(address) for address in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or [str(addresses[0])])[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + dt.timedelta(days=SERVER_VALID_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False  # type: ignore[arg-type]
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    # The key is written first, so a reload that reads the new certificate finds its key.
    _write_private(files.server_key, _key_pem(key))
    _write_public(files.server_cert, certificate.public_bytes(serialization.Encoding.PEM))
    return certificate


def load_ca(files: TlsFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Read the local CA's certificate and key."""
    try:
        certificate = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise TlsError(f"cannot read the local CA in {files.directory}: {error}; run `ringboard tls init --new-ca`") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{files.ca_key} is not the EC key that `ringboard tls init` writes")
    return certificate, key


def names_outside_ca(files: TlsFiles, names: list[str]) -> list[str]:
    """Return the names of `names` that the existing CA's name constraints do not permit."""
    certificate, _ = load_ca(files)
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return []
    dns, addresses = split_names(names)
    permitted = constraints.permitted_subtrees or []
    allowed_dns = [item.value for item in permitted if isinstance(item, x509.DNSName)]
    allowed_networks = [item.value for item in permitted if isinstance(item, x509.IPAddress)]
    outside = [name for name in dns if not any(name == base or name.endswith("." + base) for base in allowed_dns)]
    outside += [str(address) for address in addresses if not any(address in network for network in allowed_networks)]
    return outside


def spki_sha256(certificate_path: Path) -> str:
    """Return the base64 SHA-256 of a certificate's public key, as Chromium's SPKI lists take it."""
    import base64
    import hashlib

    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def certificate_info(path: Path) -> CertificateInfo:
    """Read the first certificate of a PEM file."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as error:
        raise TlsError(f"cannot read {path}: {error.strerror}") from error
    except ValueError as error:
        raise TlsError(f"{path} contains no PEM certificate: {error}") from error
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(name.value) for name in san)
    except x509.ExtensionNotFound:
        names = ()
    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        names=names,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        is_ca=is_ca,
    )


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """Return a TLS 1.2+ server context holding the certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    load_certificate(context, certificate, key)
    return context


def load_certificate(context: ssl.SSLContext, certificate: Path, key: Path) -> CertificateInfo:
    """Load (or reload, on SIGHUP) a certificate chain into a context; new handshakes use it."""
    for setting, path in (("certificate", certificate), ("key", key)):
        if not path.is_file():
            raise TlsError(
                f"[http] {setting} {path} not found: set it to a PEM file, e.g. from `ringboard tls init`"
            )
        if not os.access(path, os.R_OK):
            raise TlsError(f"[http] {setting} {path}: permission denied for user {_user_name()}")
    try:
        context.load_cert_chain(certificate, key)
    except ssl.SSLError as error:
        raise TlsError(f"{certificate} and {key} are not a matching PEM certificate chain and key: {error}") from error
    except OSError as error:
        raise TlsError(f"cannot read {certificate} or {key}: {error.strerror}") from error
    return certificate_info(certificate)


def trust_instructions(ca_path: Path) -> str:
    """Return how to make browsers on Windows, macOS and Linux trust the local CA."""
    return f"""\
Copy {ca_path} to each office computer (it holds no secret), then trust it:

  Windows (as administrator; Chrome and Edge use the Windows store):
    certutil -addstore -f Root ringboard-ca.pem
    or, for a domain: Group Policy > Computer Configuration > Windows Settings >
    Security Settings > Public Key Policies > Trusted Root Certification Authorities.

  macOS (Safari and Chrome use the system keychain):
    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ringboard-ca.pem

  Linux, system store (Debian and Ubuntu):
    sudo cp ringboard-ca.pem /usr/local/share/ca-certificates/ringboard-ca.crt
    sudo update-ca-certificates
  Linux, Chrome and Chromium (they read the user's NSS database; package libnss3-tools):
    certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "Ringboard local CA" -i ringboard-ca.pem

  Firefox on any system: Settings > Privacy & Security > Certificates > View Certificates >
    Authorities > Import, and tick "Trust this CA to identify websites".
"""


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a key 0600 through a temporary file, so it is never readable by others or half written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    os.replace(temporary, path)


def _write_public(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())
