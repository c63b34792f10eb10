"""`ringboard contacts import|export` and `ringboard lookup`, run as a user would."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.config import AgentSettings, Config
from agent.lookup.cli import add_commands
from agent.lookup.vcard import read_vcards

CONFIG = """
[numbers]
default_region = "CH"

[lookup]
fallback_regions = ["DE", "AT"]

[[lookup.main_numbers]]
number = "+41 44 123 45 00"
extension_digits = 2

[[connectors]]
type = "addressbook"
name = "office"
label = "Office contacts"
"""

VCARDS = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:max\r\nFN:Max Muster\r\nN:Muster;Max;;;\r\nORG:Muster AG\r\n"
    "TEL;TYPE=WORK:044 123 45 67\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:zentrale\r\nFN:Muster AG\r\nORG:Muster AG\r\nX-ABShowAs:COMPANY\r\n"
    "TEL;TYPE=WORK:+41 (0)44 123 45 00\r\nEND:VCARD\r\n"
)

MAPPED_CSV = "\n".join(
    [
        "Name;Firma;Telefon",
        "Jonas Weber;Weber Logistik GmbH;030 1234567",
        "Weber Logistik GmbH;Weber Logistik GmbH;030 1234567-0",
    ]
)


def run(argv: list[str], config: Config | None) -> int:
    parser = argparse.ArgumentParser(prog="ringboard")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args, config)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "ringboard.toml"
    path.write_text(CONFIG)
    return Config(agent=AgentSettings(data_dir=tmp_path / "data"), source=path)


def test_import_then_lookup(tmp_path: Path, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    contacts = tmp_path / "contacts.vcf"
    contacts.write_text(VCARDS)

    assert run(["contacts", "import", str(contacts)], config) == 0
    assert "2 contacts added" in capsys.readouterr().out

    assert run(["lookup", "sip:+41441234567@pbx"], config) == 0
    output = capsys.readouterr().out
    assert "1. Max Muster, Muster AG  [Office contacts, score 100]" in output
    assert "044 123 45 67 matched '044 123 45 67' in Office contacts (same number)" in output
    assert "2. Muster AG  [Office contacts, score 50]" in output
    assert "is a direct dial of the main number 044 123 45 00" in output


def test_csv_import_with_mapping(tmp_path: Path, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "kunden.csv"
    table.write_text(MAPPED_CSV)

    code = run(["contacts", "import", str(table), "--mapping", "Name=name,Firma=org,Telefon=phone"], config)

    assert code == 0
    assert run(["lookup", "+49301234567"], config) == 0
    assert "Jonas Weber, Weber Logistik GmbH" in capsys.readouterr().out
    assert run(["lookup", "+493012345670"], config) == 0
    assert "1. Weber Logistik GmbH  [Office contacts, score 100]" in capsys.readouterr().out


def test_export_round_trip(tmp_path: Path, config: Config) -> None:
    contacts = tmp_path / "contacts.vcf"
    contacts.write_text(VCARDS)
    run(["contacts", "import", str(contacts)], config)
    exported = tmp_path / "export.vcf"

    assert run(["contacts", "export", str(exported)], config) == 0

    assert sorted(contact.uid for contact in read_vcards(exported.read_text())) == ["max", "zentrale"]


def test_lookup_without_match(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["lookup", "+41315550000"], config) == 1
    assert "no contact found" in capsys.readouterr().out


def test_lookup_withheld(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["lookup", "anonymous"], config) == 1
    assert "not looked up (withheld" in capsys.readouterr().out


def test_import_errors_named(tmp_path: Path, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "kunden.csv"
    table.write_text(MAPPED_CSV)

    assert run(["contacts", "import", str(table)], config) == 2
    assert "--mapping" in capsys.readouterr().err
    assert run(["contacts", "import", str(tmp_path / "missing.vcf")], config) == 2
    assert "cannot read" in capsys.readouterr().err
    assert run(["contacts", "import", str(table), "--to", "crm"], config) == 2
    assert '"crm" is not an address book connector' in capsys.readouterr().err


def test_lab_demo_without_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["lookup", "+4315123456"], None) == 0
    assert "Lena Gruber, Gruber Steuerberatung  [Demo contacts" in capsys.readouterr().out
    assert (tmp_path / "var" / "contacts.db").is_file()
