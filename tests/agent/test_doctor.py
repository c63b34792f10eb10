"""`ringboard doctor` on a configuration whose PBX, ports, certificates and files the test controls."""

import asyncio
import datetime as dt
import socket
import threading

import pytest

from agent.cli import main
from agent.doctor import OK, PROBLEM, WARNING, run_checks
from agent.config import load_config
from agent.runner import AgentRunner
from agent.tls import TlsFiles, create_ca, issue_server_certificate
from sip.message import Request, build_response, parse_message


class OptionsResponder:
    """A UDP socket on 127.0.0.1 that responds 200 to every SIP OPTIONS, in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, address = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            request = parse_message(data)
            if isinstance(request, Request) and request.method == "OPTIONS":
                self.requests.append(request)
                self.sock.sendto(build_response(request, 200, "OK", to_tag="doctor-test"), address)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def pbx():
    responder = OptionsResponder()
    yield responder
    responder.close()


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_tcp_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(tmp_path, pbx_port, *, http="", sip_extra=""):
    path = tmp_path / "ringboard.toml"
    path.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[http]\nport = {free_tcp_port()}\n{http}'
        f'[sip]\nserver = "127.0.0.1"\nport = {pbx_port}\nextensions = ["201"]\n'
        f'listen_host = "127.0.0.1"\nlisten_port = {free_udp_port()}\n{sip_extra}'
    )
    return path


def findings(path):
    return [(finding.level, finding.text) for finding in run_checks(path)]


def test_healthy_setup(tmp_path, pbx):
    (tmp_path / "data").mkdir()
    result = findings(write_config(tmp_path, pbx.port))

    assert [level for level, _ in result] == [OK] * len(result)
    assert any("answers SIP OPTIONS (status 200)" in text for _, text in result)
    assert len(pbx.requests) == 1
    assert pbx.requests[0].headers.get("CSeq") == "1 OPTIONS"


def test_silent_or_closed_pbx(tmp_path):
    closed = free_udp_port()
    result = findings(write_config(tmp_path, closed))

    [pbx_finding] = [(level, text) for level, text in result if text.startswith("PBX")]
    assert pbx_finding[0] == PROBLEM
    assert "127.0.0.1:%d/udp" % closed in pbx_finding[1]
    assert "check [sip] server and port" in pbx_finding[1]


def test_ports_in_use(tmp_path, pbx):
    path = write_config(tmp_path, pbx.port)
    config = load_config(path)
    with socket.socket() as web, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sip:
        web.bind(("127.0.0.1", config.http.port))
        web.listen()
        sip.bind(("127.0.0.1", config.sip.listen_port))
        result = findings(path)

    problems = [text for level, text in result if level == PROBLEM]
    assert any(f"HTTP port 127.0.0.1:{config.http.port} is in use by another program" in text for text in problems)
    assert any(f"SIP port 127.0.0.1:{config.sip.listen_port}/udp is in use" in text for text in problems)


async def test_port_held_by_running_agent(tmp_path, pbx):
    path = write_config(tmp_path, pbx.port)
    runner = AgentRunner(load_config(path))
    await runner.start()
    try:
        result = await asyncio.to_thread(findings, path)
    finally:
        await runner.stop()

    assert (OK, f"HTTP port 127.0.0.1:{runner.config.http.port} is held by the running Ringboard agent") in result
    assert any("presumably by the running agent" in text for level, text in result if level == OK)


def test_certificate_expiring_and_world_readable(tmp_path, pbx):
    files = TlsFiles(tmp_path / "data" / "tls")
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=380)
    create_ca(files, ["localhost"], now=long_ago)
    issue_server_certificate(files, ["localhost"], now=long_ago)
    files.server_key.chmod(0o644)
    vapid = tmp_path / "data" / "vapid-private.pem"
    vapid.write_text("not really a key\n")
    vapid.chmod(0o644)
    http = f'certificate = "{files.server_cert}"\nkey = "{files.server_key}"\n'

    result = findings(write_config(tmp_path, pbx.port, http=http))

    warnings = [text for level, text in result if level == WARNING]
    problems = [text for level, text in result if level == PROBLEM]
    assert any("expires in" in text and "ringboard tls init" in text for text in warnings)
    assert any(f"[http] key {files.server_key} is readable by every user" in text for text in problems)
    assert any(f"data folder {vapid} is readable by every user" in text for text in problems)
    assert not any(str(files.ca_key) in text for text in problems)


def test_certificate_and_key_mismatch(tmp_path, pbx):
    files = TlsFiles(tmp_path / "data" / "tls")
    create_ca(files, ["localhost"])
    issue_server_certificate(files, ["localhost"])
    http = f'certificate = "{files.server_cert}"\nkey = "{files.ca_key}"\n'

    result = findings(write_config(tmp_path, pbx.port, http=http))

    assert any(level == PROBLEM and "not a matching" in text for level, text in result)


def test_invalid_config_reported(tmp_path, capsys):
    path = tmp_path / "ringboard.toml"
    path.write_text('[http]\nhost = "0.0.0.0"\n[sip]\nserver = "127.0.0.1"\nextensions = ["201"]\n')

    code = main(["doctor", "--config", str(path)])
    out = capsys.readouterr().out

    assert code == 1
    assert out.startswith("problem  configuration: [http] host")
    assert "needs HTTPS" in out
    assert "1 problems, 0 warnings" in out


def test_exit_code_ok(tmp_path, pbx, capsys):
    (tmp_path / "data").mkdir()
    code = main(["doctor", "--config", str(write_config(tmp_path, pbx.port))])

    assert code == 0
    assert "0 problems" in capsys.readouterr().out
