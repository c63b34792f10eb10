"""Builds ui.zip, the browser UI's Python package that the page unpacks into Pyodide.

The zip contains `ringboard_ui/` from webapp/ui: its modules and its translation
catalogues. The build is deterministic (sorted entries, fixed timestamps and
permissions), so the same sources give the same bytes. Stdlib only, because
scripts/setup runs it as well as the agent.

    python -m agent.webui build [--output PATH] [--source DIR]

writes var/ui/ui.zip (relative to the current directory) unless --output names
another file. That is where the agent looks with the default `[agent] data_dir = ./var`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("ringboard.webui")

PACKAGE_NAME = "ringboard_ui"
SOURCE_DIR = Path(__file__).resolve().parent.parent / "webapp" / "ui"
UI_ZIP_NAME = "ui.zip"
DEFAULT_DATA_DIR = Path("var")

INCLUDED_SUFFIXES = frozenset({".py", ".json"})

# The earliest time a zip entry can hold; a fixed value keeps the bytes reproducible.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
ZIP_COMPRESS_LEVEL = 9


def ui_zip_path(data_dir: Path) -> Path:
    """Return where the agent keeps the built zip inside its data directory."""
    return data_dir / "ui" / UI_ZIP_NAME


def ui_sources(source_dir: Path) -> list[tuple[str, Path]]:
    """Return (name in the zip, file) for every module and catalogue, sorted by name."""
    package_dir = source_dir / PACKAGE_NAME
    if not package_dir.is_dir():
        raise FileNotFoundError(f"UI package not found: {package_dir} does not exist or is not a folder")

    sources = []
    for path in package_dir.rglob("*"):
        if not path.is_file() or path.suffix not in INCLUDED_SUFFIXES:
            continue
        if "__pycache__" in path.relative_to(source_dir).parts:
            continue
        sources.append((path.relative_to(source_dir).as_posix(), path))
    return sorted(sources)


def build_ui_zip(source_dir: Path, output: Path) -> Path:
    """Write the zip of `source_dir`'s UI package to `output` atomically; return `output`."""
    sources = ui_sources(source_dir)
    output.parent.mkdir(parents=True, exist_ok=True)

    # Written beside the target, then renamed over it, so the agent never serves a
    # half-written zip.
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(handle, "wb") as stream, zipfile.ZipFile(stream, "w") as archive:
            for name, path in sources:
                info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so external_attr carries the file mode.
                info.external_attr = ZIP_FILE_MODE << 16
                archive.writestr(info, path.read_bytes(), compresslevel=ZIP_COMPRESS_LEVEL)
        os.chmod(temporary, 0o644)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

    log.info("built %s from %d files in %s (%d bytes)", output, len(sources), source_dir, output.stat().st_size)
    return output


def ensure_ui_zip(data_dir: Path, source_dir: Path = SOURCE_DIR) -> Path:
    """Return the zip in `data_dir`, rebuilding it when it is missing or out of date.

    It is out of date when a source file is as new as the zip or newer, or when files
    were added or removed. Without the sources (an install that ships only the built
    zip) an existing zip is used as it is.
    """
    output = ui_zip_path(data_dir)
    if not (source_dir / PACKAGE_NAME).is_dir():
        if output.is_file():
            return output
        raise FileNotFoundError(
            f"UI package not found in {source_dir} and no built zip at {output}; "
            "run `python -m agent.webui build` from a checkout"
        )

    sources = ui_sources(source_dir)
    if _is_current(output, sources):
        return output
    return build_ui_zip(source_dir, output)


def _is_current(output: Path, sources: list[tuple[str, Path]]) -> bool:
    try:
        built_ns = output.stat().st_mtime_ns
        with zipfile.ZipFile(output) as archive:
            names = archive.namelist()
    except (FileNotFoundError, zipfile.BadZipFile):
        return False

    if names != [name for name, _ in sources]:
        return False
    return all(path.stat().st_mtime_ns < built_ns for _, path in sources)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `build` command; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m agent.webui", description="Build the browser UI's zip.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write ui.zip from webapp/ui")
    build.add_argument(
        "--output",
        type=Path,
        default=ui_zip_path(DEFAULT_DATA_DIR),
        help="zip file to write (default: %(default)s, relative to the current directory)",
    )
    build.add_argument(
        "--source",
        type=Path,
        default=SOURCE_DIR,
        help="folder that contains the ringboard_ui package (default: the checkout's webapp/ui)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = build_ui_zip(args.source, args.output)
    except OSError as error:
        print(f"error: building the UI zip failed: {error}", file=sys.stderr)
        return 1

    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
