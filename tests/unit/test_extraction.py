"""Upload names and types, content checks, and text extraction in the limited child."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app_service import extraction
from app_service.extraction import (
    KINDS,
    check_content,
    clean_text,
    extract_text,
    kind_for_name,
    read_html,
    sanitize_name,
)
from chatstack.errors import APIError
from tests.upload_samples import make_docx, make_docx_bomb, make_pdf

LIMITS = {"timeout": 20.0, "memory_mb": 512, "max_chars": 1_000_000}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def extract(tmp_path, name, data, kind, **limits):
    return extract_text(write(tmp_path, name, data), kind, **{**LIMITS, **limits})


def check_and_extract(path, kind):
    """What store_upload does with the bytes: the parent's first look, then the child."""
    check_content(path, kind)
    return extract_text(path, kind, **LIMITS)


def error_of(call, *args, **kwargs) -> APIError:
    with pytest.raises(APIError) as caught:
        call(*args, **kwargs)
    return caught.value


# ---- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("C:\\Users\\me\\notes.md", "notes.md"),
        ("<script>alert(1)</script>.txt", "script>.txt"),
        ("<b>bold</b>.txt", "b>.txt"),
        ("tab\there\nnew\x00line.txt", "tabherenewline.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("  spaced   out  .txt ", "spaced out .txt"),
        ("..", "upload"),
        ("", "upload"),
        (None, "upload"),
        ("dir/", "upload"),
        ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),
    ],
)
def test_sanitize_name(raw, clean):
    assert sanitize_name(raw) == clean


def test_a_long_name_is_cut_and_keeps_its_extension():
    name = sanitize_name("a" * 500 + ".docx")
    assert len(name) == extraction.MAX_NAME_CHARS
    assert name.endswith("a.docx")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.txt", "text"),
        ("A.MD", "markdown"),
        ("data.csv", "csv"),
        ("x.json", "json"),
        ("main.py", "code"),
        ("App.tsx", "code"),
        ("lib.rs", "code"),
        ("conf.yml", "code"),
        ("page.htm", "html"),
        ("paper.pdf", "pdf"),
        ("letter.docx", "docx"),
    ],
)
def test_kind_by_extension(name, kind):
    assert kind_for_name(name) == kind


@pytest.mark.parametrize(
    "name", ["a.exe", "a.doc", "a.png", "archive.zip", "Makefile", "a.pdf.exe"]
)
def test_unknown_extensions_are_415(name):
    err = error_of(kind_for_name, name)
    assert err.status == 415
    assert err.code == "unsupported_file_type"
    assert "Accepted extensions" in err.message


# ---- content checks --------------------------------------------------------------------------


def test_content_checks_accept_real_files(tmp_path):
    assert check_and_extract(write(tmp_path, "a.pdf", make_pdf(["hi"])), "pdf") == "hi"
    assert check_and_extract(write(tmp_path, "a.docx", make_docx(["hi"])), "docx") == "hi"
    text = check_and_extract(write(tmp_path, "a.txt", "\ufeffcaf\u00e9 \u2603"), "text")
    assert text == "caf\u00e9 \u2603"


@pytest.mark.parametrize(
    ("data", "kind", "says"),
    [
        (b"hello, not a pdf", "pdf", "not a PDF"),
        (b"", "pdf", "not a PDF"),
        (b"%PDF", "pdf", "not a PDF"),
        (b"plain text", "docx", "not a Word document"),
        (b"", "docx", "not a Word document"),
        (b"PK\x03\x04 broken zip", "docx", "not a Word document"),
        (b"caf\xe9", "text", "not valid UTF-8"),
        (b"abc\x00def", "code", "binary data"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "markdown", "binary data"),
        (b"<p>caf\xe9</p>", "html", "not valid UTF-8"),
    ],
)
def test_content_mismatch_is_415(tmp_path, data, kind, says):
    err = error_of(check_and_extract, write(tmp_path, "f", data), kind)
    assert err.status == 415
    assert err.code == "file_content_mismatch"
    assert says in err.message


def test_a_zip_that_is_not_a_docx_is_415(tmp_path):
    path = tmp_path / "a.docx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    err = error_of(check_and_extract, path, "docx")
    assert err.status == 415
    assert "not a Word document" in err.message


def test_the_parent_opens_no_zip_and_decodes_no_text(tmp_path, monkeypatch):
    docx_path = write(tmp_path, "a.docx", make_docx(["Parsed in the child."]))
    zip_path = tmp_path / "b.docx"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("readme.txt", "hello")
    text_path = write(tmp_path, "a.txt", "caf\u00e9")
    latin1_path = write(tmp_path, "b.txt", "caf\u00e9".encode("latin-1"))

    def refuse(*_args, **_kwargs):
        raise AssertionError("the parent process parsed an upload")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    monkeypatch.setattr(type(text_path), "read_bytes", refuse)
    monkeypatch.setattr(type(text_path), "read_text", refuse)

    assert check_and_extract(docx_path, "docx") == "Parsed in the child."
    assert "not a Word document" in error_of(check_and_extract, zip_path, "docx").message
    assert check_and_extract(text_path, "text") == "caf\u00e9"
    assert "not valid UTF-8" in error_of(check_and_extract, latin1_path, "text").message


# ---- extraction ------------------------------------------------------------------------------


def test_text_kinds_come_back_as_written(tmp_path):
    text = "\ufeffline one\r\nline two \u2603\n"
    assert extract(tmp_path, "a.txt", text, "text") == "line one\nline two \u2603\n"
    assert extract(tmp_path, "a.py", "def f():\n\treturn 1\n", "code") == "def f():\n\treturn 1\n"


def test_html_gives_visible_text_only():
    html = (
        "<!doctype html><html><head><title>Title here</title>"
        "<style>body { color: red }</style><script>var secret = 1;</script></head>"
        "<body><h1>Head&amp;ing</h1><p>First <b>bold</b> para.</p><br/>"
        "<script type='module'>alert('x')</script><noscript>enable js</noscript>"
        "<ul><li>one</li><li>two</li></ul></body></html>"
    )
    text = read_html(html.encode())
    assert "secret" not in text
    assert "color" not in text
    assert "alert" not in text
    assert "enable js" not in text
    assert text.splitlines() == [
        "Title here",
        "",
        "Head&ing",
        "",
        "First bold para.",
        "",
        "one",
        "",
        "two",
    ]


def test_clean_text_drops_control_characters():
    assert clean_text("a\x00b\x07c\td\r\ne\rf\x7f") == "abc\td\ne\nf"


def test_pdf_text_is_extracted(tmp_path):
    data = make_pdf(["The zorkmid is the currency.", "Page two talks about grues."])
    text = extract(tmp_path, "a.pdf", data, "pdf")
    assert "The zorkmid is the currency." in text
    assert "Page two talks about grues." in text
    assert text.index("zorkmid") < text.index("grues")


def test_an_encrypted_pdf_is_422(tmp_path):
    data = make_pdf(["secret text"], password="hunter2")
    err = error_of(extract, tmp_path, "a.pdf", data, "pdf")
    assert err.status == 422
    assert "encrypted" in err.message


def test_a_pdf_encrypted_with_an_empty_password_is_readable(tmp_path):
    data = make_pdf(["open to all"], password="")
    assert "open to all" in extract(tmp_path, "a.pdf", data, "pdf")


def test_a_malformed_pdf_is_422(tmp_path):
    err = error_of(extract, tmp_path, "a.pdf", b"%PDF-1.7\n garbage \x00\x01 no objects", "pdf")
    assert err.status == 422
    assert err.code == "unreadable_file"


def test_a_pdf_with_no_text_is_422_saying_so(tmp_path):
    err = error_of(extract, tmp_path, "a.pdf", make_pdf([""]), "pdf")
    assert err.status == 422
    assert err.code == "empty_file"
    assert "no text" in err.message


def test_docx_paragraphs_and_tables_are_extracted(tmp_path):
    data = make_docx(["Hello from Word.", "Second paragraph."], table=[["k", "v"], ["a", "1"]])
    text = extract(tmp_path, "a.docx", data, "docx")
    assert text.splitlines()[:2] == ["Hello from Word.", "Second paragraph."]
    assert "k | v" in text
    assert "a | 1" in text


def test_a_docx_bomb_is_refused_before_it_is_inflated(tmp_path):
    data = make_docx_bomb(inflated_mb=20)
    assert len(data) < 200_000
    err = error_of(extract, tmp_path, "a.docx", data, "docx")
    assert err.status == 422
    assert "zip bomb" in err.message


def test_a_docx_with_broken_xml_is_422(tmp_path):
    path = tmp_path / "a.docx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types")
        z.writestr("word/document.xml", "<not xml")
    err = error_of(extract_text, path, "docx", **LIMITS)
    assert err.status == 422
    assert err.code == "unreadable_file"


def test_text_longer_than_the_limit_is_422(tmp_path):
    err = error_of(extract, tmp_path, "a.txt", "x" * 200, "text", max_chars=100)
    assert err.status == 422
    assert "too long" in err.message


def test_a_hung_extractor_is_killed_at_the_time_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(
        extraction,
        "child_command",
        lambda *_args: [sys.executable, "-c", "import time; time.sleep(30)"],
    )
    err = error_of(extract, tmp_path, "a.txt", "hello", "text", timeout=0.5)
    assert err.status == 422
    assert err.code == "extraction_timeout"
    assert "0.5 seconds" in err.message


def test_a_crashing_extractor_is_422(tmp_path, monkeypatch):
    monkeypatch.setattr(
        extraction,
        "child_command",
        lambda *_args: [sys.executable, "-c", "import os; os.abort()"],
    )
    err = error_of(extract, tmp_path, "a.txt", "hello", "text")
    assert err.status == 422
    assert err.code == "unreadable_file"


def test_the_child_memory_limit_holds():
    code = (
        "from app_service.extraction import limit_resources\n"
        "limit_resources(256)\n"
        "try:\n"
        "    block = bytearray(512 * 1024 * 1024)\n"
        "except MemoryError:\n"
        "    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout.strip() == "refused", result.stderr


def test_an_extractor_out_of_memory_reports_422(tmp_path):
    # 20 MB of text cannot be held (read, decoded, encoded) within a 64 MiB address space.
    err = error_of(extract, tmp_path, "a.txt", "y" * 20_000_000, "text", memory_mb=64, max_chars=0)
    assert err.status == 422
    assert "more than 64 MiB of memory" in err.message


def test_the_web_apps_accepted_extensions_are_the_servers() -> None:
    """The file picker's `accept` and the refusal the page says before sending come from
    web/src/api/uploads.ts's ACCEPTED_EXTENSIONS: it must list exactly KINDS."""
    uploads_ts = Path(__file__).resolve().parents[2] / "web" / "src" / "api" / "uploads.ts"
    block = re.search(
        r"ACCEPTED_EXTENSIONS = \[(.*?)\];", uploads_ts.read_text(encoding="utf-8"), re.S
    )
    assert block, "ACCEPTED_EXTENSIONS not found in uploads.ts"
    listed = re.findall(r"'([a-z0-9]+)'", block.group(1))
    assert listed == sorted(KINDS)
