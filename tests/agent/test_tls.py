"""`ringboard tls init`, and the agent over HTTPS with its certificate: HSTS, the Secure cookie, SIGHUP reload."""

import asyncio
import datetime as dt
import os
import signal
import socket
import ssl
import stat

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from agent.cli import main
from agent.config import AgentSettings, Config, HttpSettings, SipSettings
from agent.runner import AgentRunner
from agent.tls import SERVER_VALID_DAYS, TlsError, TlsFiles, load_ca, spki_sha256
from tests.agent.test_pipeline import next_message
from tests.support.fake_pbx import FakePbx
from tests.support.pairing import add_user


def tls_init(tmp_path, *extra):
    config = tmp_path / "ringboard.toml"
    config.write_text(f'[agent]\ndata_dir = "{tmp_path}"\n[sip]\nserver = "127.0.0.1"\nextensions = ["201"]\n')
    return main(["tls", "init", "--config", str(config), "--name", "ringboard.test", *extra])


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_writes_ca_and_server_certificate(tmp_path, capsys):
    assert tls_init(tmp_path, "--name", "192.0.2.10") == 0
    output = capsys.readouterr().out
    files = TlsFiles(tmp_path / "tls")

    ca = load(files.ca_cert)
    server = load(files.server_cert)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"ringboard.test", "localhost", socket.gethostname()} <= set(names.get_values_for_type(x509.DNSName))
    assert {"192.0.2.10", "127.0.0.1", "::1"} <= {str(address) for address in names.get_values_for_type(x509.IPAddress)}
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert (server.not_valid_after_utc - server.not_valid_before_utc).days <= SERVER_VALID_DAYS + 1
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.NameConstraints).critical
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

    for system in ("Windows", "macOS", "Linux", "certutil -addstore", "security add-trusted-cert", "update-ca-certificates"):
        assert system in output
    assert f'certificate = "{files.server_cert.resolve()}"' in output


def test_server_certificate_verifies_against_ca(tmp_path):
    tls_init(tmp_path)
    files = TlsFiles(tmp_path / "tls")
    store = Store([load(files.ca_cert)])

    for name in ("ringboard.test", "localhost"):
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
        assert verifier.verify(load(files.server_cert), [])


def test_ca_cannot_vouch_for_other_names(tmp_path):
    tls_init(tmp_path)
    files = TlsFiles(tmp_path / "tls")
    ca_cert, ca_key = load_ca(files)
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.example")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    verifier = PolicyBuilder().store(Store([ca_cert])).build_server_verifier(x509.DNSName("bank.example"))

    with pytest.raises(VerificationError):
        verifier.verify(forged, [])


def test_second_init_reuses_ca(tmp_path, capsys):
    tls_init(tmp_path)
    files = TlsFiles(tmp_path / "tls")
    first_ca = files.ca_cert.read_bytes()
    first_server = files.server_cert.read_bytes()

    assert tls_init(tmp_path) == 0

    assert "Local CA reused" in capsys.readouterr().out
    assert files.ca_cert.read_bytes() == first_ca
    assert files.server_cert.read_bytes() != first_server


def test_new_name_needs_new_ca(tmp_path, capsys):
    tls_init(tmp_path)
    capsys.readouterr()

    assert tls_init(tmp_path, "--name", "other.test") == 1
    assert "--new-ca" in capsys.readouterr().err

    assert tls_init(tmp_path, "--name", "other.test", "--new-ca") == 0
    assert "Local CA created" in capsys.readouterr().out


def test_invalid_name_rejected(tmp_path, capsys):
    assert tls_init(tmp_path, "--name", "bad name!") == 1
    assert "neither a host name nor an IP address" in capsys.readouterr().err


@pytest.fixture
async def https_agent(tmp_path):
    tls_init(tmp_path)
    files = TlsFiles(tmp_path / "tls")
    server = FakePbx()
    host, port = await server.start()
    config = Config(
        agent=AgentSettings(data_dir=tmp_path),
        http=HttpSettings(port=0, certificate=files.server_cert, key=files.server_key),
        sip=SipSettings(
            server=host, port=port, domain="pbx.local", extensions=("201",), pbx="kamailio",
            listen_host="127.0.0.1", listen_port=0,
        ),
    )
    runner = AgentRunner(config)
    url = await runner.start()
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    yield runner, url.replace("127.0.0.1", "localhost"), context, files
    await runner.stop()
    server.close()


async def test_https_pairing_and_events(https_agent, tmp_path):
    runner, url, context, files = https_agent
    pin = add_user(tmp_path, "anna", ("201",))
    assert url.startswith("https://localhost:")

    async with httpx.AsyncClient(verify=context) as client:
        page = await client.get(url)
        paired = await client.post(url + "api/pair", json={"pin": pin})

    assert page.status_code == 200
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    cookie = paired.headers["set-cookie"]
    assert cookie.startswith("__Host-ringboard_device=")
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    token = paired.cookies["__Host-ringboard_device"]

    events = url.replace("https", "wss") + "api/events"
    headers = {"Cookie": f"__Host-ringboard_device={token}"}
    async with websockets.connect(events, ssl=context, additional_headers=headers) as socket:
        snapshot = await next_message(socket, "snapshot")
    assert snapshot["version"] == 1

    # The cookie name without the prefix carries no session over HTTPS.
    async with httpx.AsyncClient(verify=context) as client:
        plain_name = await client.get(url + "api/history", headers={"Cookie": f"ringboard_device={token}"})
    assert plain_name.status_code == 401


def presented_serial(url, context):
    host, port = url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port))) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


async def test_sighup_reloads_certificate(https_agent, tmp_path):
    runner, url, context, files = https_agent
    before = await asyncio.to_thread(presented_serial, url, context)
    tls_init(tmp_path)
    renewed = load(files.server_cert).serial_number
    assert renewed != before

    if runner._sighup_installed:
        os.kill(os.getpid(), signal.SIGHUP)
    else:
        runner.reload()
    for _ in range(100):
        if await asyncio.to_thread(presented_serial, url, context) == renewed:
            break
        await asyncio.sleep(0.02)

    assert await asyncio.to_thread(presented_serial, url, context) == renewed


async def test_reload_keeps_old_certificate_on_error(https_agent, caplog):
    runner, url, context, files = https_agent
    before = await asyncio.to_thread(presented_serial, url, context)
    files.server_key.write_text("not a key\n")

    runner.reload()

    assert "not reloaded" in caplog.text
    assert await asyncio.to_thread(presented_serial, url, context) == before


async def test_missing_certificate_stops_start(tmp_path):
    config = Config(
        agent=AgentSettings(data_dir=tmp_path),
        http=HttpSettings(port=0, certificate=tmp_path / "missing.pem", key=tmp_path / "missing-key.pem"),
        sip=SipSettings(server="127.0.0.1", extensions=("201",), listen_host="127.0.0.1", listen_port=0),
    )
    runner = AgentRunner(config)

    with pytest.raises(TlsError, match="missing.pem not found"):
        await runner.start()
    runner.history.close()
    runner.users.close()


def test_spki_hash_is_base64_sha256(tmp_path):
    tls_init(tmp_path)

    digest = spki_sha256(TlsFiles(tmp_path / "tls").server_cert)

    assert len(digest) == 44
    assert digest.endswith("=")
