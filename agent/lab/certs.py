"""The lab's TLS certificates: a CA of its own and a server certificate for Kamailio.

The `openssl` command makes them at every lab start, valid for a few days. The server
certificate names the lab's domain and 127.0.0.1, so the agent verifies the PBX with
`ca_file` pointing at the lab CA, as with an office PBX that has its own CA.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.lab.processes import LOOPBACK, LabError, find_program

# Long enough for a lab left running over a weekend; a new start makes new ones.
VALID_DAYS = 7

# P-256 keys are quick to make and every TLS stack of interest accepts them.
KEY_OPTIONS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class LabCertificates:
    """Paths of the lab CA's certificate and of Kamailio's certificate and key."""

    ca_file: Path
    certificate: Path
    key: Path


def make_certificates(workdir: Path, domain: str) -> LabCertificates:
    """Write a CA and a server certificate for `domain` and 127.0.0.1 into the work dir."""
    openssl = find_program("openssl", "openssl")
    folder = workdir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    certificates = LabCertificates(folder / "lab-ca.pem", folder / "pbx.pem", folder / "pbx-key.pem")
    ca_key = folder / "lab-ca-key.pem"

    _run(
        openssl, "req", "-x509", *KEY_OPTIONS,
        "-keyout", str(ca_key), "-out", str(certificates.ca_file),
        "-days", str(VALID_DAYS), "-subj", "/CN=Ringboard lab CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )
    _run(
        openssl, "req", "-x509", *KEY_OPTIONS,
        "-keyout", str(certificates.key), "-out", str(certificates.certificate),
        "-days", str(VALID_DAYS), "-subj", f"/CN={domain}",
        "-CA", str(certificates.ca_file), "-CAkey", str(ca_key),
        "-addext", f"subjectAltName=DNS:{domain},IP:{LOOPBACK}",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature",
        "-addext", "extendedKeyUsage=serverAuth",
    )
    for path in (ca_key, certificates.key):
        path.chmod(0o600)
    return certificates


def write_tls_config(path: Path, certificates: LabCertificates) -> None:
    """Write Kamailio's tls.cfg: the server certificate, TLS 1.2 or newer, no client certificates."""
    path.write_text(
        "[server:default]\n"
        "method = TLSv1.2+\n"
        "verify_certificate = no\n"
        "require_certificate = no\n"
        f"private_key = {certificates.key}\n"
        f"certificate = {certificates.certificate}\n"
        "\n"
        "[client:default]\n"
        "method = TLSv1.2+\n"
        "verify_certificate = no\n"
        "require_certificate = no\n"
    )


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"openssl failed with exit code {result.returncode}: {result.stderr.strip()[-500:]}")
