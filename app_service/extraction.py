"""Upload types and text extraction.

The parent side (`kind_for_name`, `check_content`, `extract_text`) runs in the app service
and looks at no more of an upload than its first bytes (a PDF's or a zip's magic). All
parsing of untrusted bytes (a DOCX's zip directory, PDF, HTML, decoding text) runs in a
child process (`python -m app_service.extraction PATH KIND`) that limits its own memory
before it touches the file, and that the parent kills after a wall-time limit. A bomb, a
parser stuck in a loop or a crash costs the child, never the gunicorn worker.

Child protocol: exit 0 with the text as UTF-8 on stdout; exit 2 (unreadable → 422) or 3
(not what the extension says → 415) with a message for the user as the last line of
stderr; anything else is an unexpected failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import resource
import subprocess
import sys
import unicodedata
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from chatstack.errors import APIError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_CODE = (
    "py js mjs cjs ts tsx jsx java kt c cc cpp cxx h hpp go rs rb php sh bash sql "
    "yaml yml toml xml css scss ini cfg"
)
#: extension → kind. The kind decides the content check and the extractor.
KINDS: dict[str, str] = {
    "txt": "text",
    "log": "text",
    "md": "markdown",
    "markdown": "markdown",
    "csv": "csv",
    "tsv": "csv",
    "json": "json",
    "html": "html",
    "htm": "html",
    "pdf": "pdf",
    "docx": "docx",
    **{ext: "code" for ext in _CODE.split()},
}
TEXT_KINDS = frozenset({"text", "markdown", "csv", "json", "code"})

MAX_NAME_CHARS = 200
# A DOCX is a zip: refuse archives that would inflate past these before parsing them.
DOCX_MAX_MEMBERS = 2000
DOCX_MAX_UNCOMPRESSED = 200 * 1024 * 1024
DOCX_MAX_RATIO = 100  # for members over 1 MiB; real XML compresses ~10:1

EXIT_REFUSED = 2
EXIT_MISMATCH = 3

# The magic bytes the parent checks before starting a child: cheap, and parse nothing.
MAGIC = {
    "pdf": (b"%PDF-", "The file has a .pdf extension but is not a PDF."),
    "docx": (b"PK\x03\x04", "The file has a .docx extension but is not a Word document."),
}


class Refused(Exception):
    """Inside the child: the file cannot be read, for a reason the user should see (422)."""


class Mismatch(Refused):
    """Inside the child: the content is not what the extension claims (415)."""


# ---- names and types (parent side) ---------------------------------------------------------


def sanitize_name(raw: str | None) -> str:
    """A client's file name → a display name: no path, no control characters, bounded."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    # Cc: control characters; Cf: invisible formatting such as the right-to-left
    # override that makes "evil\u202etxt.exe" display as "evilexe.txt".
    name = "".join(
        ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs")
    )
    name = " ".join(name.split()).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_NAME_CHARS - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:MAX_NAME_CHARS]
    return name or "upload"


def kind_for_name(name: str) -> str:
    """The kind of an upload by its (sanitized) name's extension, or a 415."""
    _, dot, ext = name.rpartition(".")
    ext = ext.lower() if dot else ""
    if ext not in KINDS:
        shown = f"'.{ext}'" if ext else "no extension"
        allowed = ", ".join(sorted(KINDS))
        raise APIError(
            415,
            f"Files with {shown} are not accepted. Accepted extensions: {allowed}.",
            param="file",
            code="unsupported_file_type",
        )
    return KINDS[ext]


def check_content(path: Path, kind: str) -> None:
    """A PDF or DOCX must start with its magic bytes, or a 415; the child checks the rest."""
    if kind not in MAGIC:
        return
    magic, message = MAGIC[kind]
    with path.open("rb") as f:
        if f.read(len(magic)) != magic:
            raise _mismatch(message)


def _mismatch(message: str) -> APIError:
    return APIError(415, message, param="file", code="file_content_mismatch")


# ---- running the child (parent side) -------------------------------------------------------


def child_command(path: Path, kind: str, memory_mb: int, max_chars: int) -> list[str]:
    """The extractor's command line (a function so tests can swap in a misbehaving one)."""
    return [
        sys.executable,
        "-m",
        "app_service.extraction",
        str(path),
        kind,
        f"--memory-mb={memory_mb}",
        f"--max-chars={max_chars}",
    ]


def extract_text(path: Path, kind: str, *, timeout: float, memory_mb: int, max_chars: int) -> str:
    """The text of an upload, extracted in a time- and memory-limited child, or a 422."""
    env = {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    try:
        result = subprocess.run(
            child_command(path, kind, memory_mb, max_chars),
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _unreadable(
            f"Reading the file took longer than {timeout:g} seconds; it may be malformed "
            "or too complex.",
            "extraction_timeout",
        ) from None
    if result.returncode in (EXIT_REFUSED, EXIT_MISMATCH):
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        message = lines[-1] if lines else "The file could not be read."
        if result.returncode == EXIT_MISMATCH:
            raise _mismatch(message)
        raise _unreadable(message)
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", "replace")[-2000:]
        log.warning("extractor for %s (%s) exited %s: %s", path.name, kind, result.returncode, tail)
        raise _unreadable("The file could not be read: it is malformed or unsupported.")
    text = result.stdout.decode("utf-8", "replace")
    if not text.strip():
        raise _unreadable(
            "The file has no text to extract"
            + (" (a scanned PDF has only images)." if kind == "pdf" else "."),
            "empty_file",
        )
    return text


def _unreadable(message: str, code: str = "unreadable_file") -> APIError:
    return APIError(422, message, param="file", code=code)


# ---- the child -----------------------------------------------------------------------------


def limit_resources(memory_mb: int) -> None:
    """Cap this process's address space; writing to any file is refused too."""
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _ext_hint(kind: str) -> str:
    return {"text": "text", "markdown": "Markdown", "html": "HTML"}.get(kind, kind)


def read_text(data: bytes, kind: str) -> str:
    """UTF-8 text (a BOM is allowed) without NUL bytes, or a Mismatch."""
    if b"\x00" in data:
        raise Mismatch(f"The file has a .{_ext_hint(kind)} type but contains binary data.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Mismatch(
            f"The file is not valid UTF-8 text (invalid byte at offset {exc.start}). "
            "Save it as UTF-8 and upload it again."
        ) from None


_BLOCK_TAGS = (
    "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 "
    "h4 h5 h6 header hr li main nav ol p pre section table td th tr ul title"
)


class _VisibleText(HTMLParser):
    """The text a browser would show: no script, style or other hidden elements."""

    HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
    BLOCK = frozenset(_BLOCK_TAGS.split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden_depth += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden_depth = max(self.hidden_depth - 1, 0)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.parts.append(data)


def read_html(data: bytes) -> str:
    parser = _VisibleText()
    parser.feed(read_text(data, "html"))
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def read_pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            # An empty user password only restricts editing; the text is readable.
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                raise Refused("The PDF is encrypted (password-protected); upload an unlocked copy.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise Refused(f"The PDF could not be read: {exc}") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def docx_members(path: Path) -> list[zipfile.ZipInfo]:
    """The parts of a zip that holds `word/document.xml`, or a Mismatch."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise Mismatch(MAGIC["docx"][1]) from None
    if not any(m.filename == "word/document.xml" for m in members):
        raise Mismatch("The file is a zip archive but not a Word document (.docx).")
    return members


def check_zip_bomb(members: list[zipfile.ZipInfo]) -> None:
    """Refuse a DOCX whose members would inflate past our limits, before inflating any."""
    if len(members) > DOCX_MAX_MEMBERS:
        raise Refused(f"The Word document has too many parts ({len(members)}).")
    total = sum(m.file_size for m in members)
    if total > DOCX_MAX_UNCOMPRESSED:
        raise Refused(
            f"The Word document would inflate to {total // (1024 * 1024)} MiB; "
            f"the limit is {DOCX_MAX_UNCOMPRESSED // (1024 * 1024)} MiB."
        )
    for m in members:
        if m.file_size > 1024 * 1024 and m.file_size > DOCX_MAX_RATIO * max(m.compress_size, 1):
            raise Refused(
                f"The Word document looks like a zip bomb: '{m.filename}' inflates "
                f"{m.file_size // max(m.compress_size, 1)}-fold."
            )


def read_docx(path: Path) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    check_zip_bomb(docx_members(path))
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise Refused(f"The Word document could not be read: {exc}") from None
    blocks: list[str] = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n".join(blocks).strip()


def clean_text(text: str) -> str:
    """Normalized newlines, no NULs or other control characters but tab and newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)


def read_file(path: Path, kind: str) -> str:
    """Inside the child: the text of one file of one kind (raises Refused)."""
    if kind == "pdf":
        text = read_pdf(path)
    elif kind == "docx":
        text = read_docx(path)
    elif kind == "html":
        text = read_html(path.read_bytes())
    elif kind in TEXT_KINDS:
        text = read_text(path.read_bytes(), kind)
    else:
        raise Refused(f"Unknown kind {kind!r}.")
    return clean_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract an upload's text to stdout.")
    parser.add_argument("path", type=Path)
    parser.add_argument("kind")
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--max-chars", type=int, default=0)
    args = parser.parse_args(argv)
    limit_resources(args.memory_mb)
    try:
        text = read_file(args.path, args.kind)
        if args.max_chars and len(text) > args.max_chars:
            raise Refused(
                f"The file's text is too long ({len(text)} characters; "
                f"the limit is {args.max_chars})."
            )
    except Mismatch as exc:
        print(exc, file=sys.stderr)
        return EXIT_MISMATCH
    except Refused as exc:
        print(exc, file=sys.stderr)
        return EXIT_REFUSED
    except MemoryError:
        print(
            f"Reading the file needed more than {args.memory_mb} MiB of memory.",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    sys.stdout.buffer.write(text.encode("utf-8", "replace"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
