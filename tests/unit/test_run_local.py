"""`make run`'s runner without servers: .env reading and the MODEL_API_KEY it writes."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from deploy.run_local import ROOT, ensure_model_api_key, read_env_file


def test_a_missing_env_file_is_made_private_with_a_random_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / ".env"
    key = ensure_model_api_key(env_file, {})
    assert key and len(key) >= 32
    assert read_env_file(env_file) == {"MODEL_API_KEY": key}
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    (line,) = capsys.readouterr().out.splitlines()
    assert "MODEL_API_KEY" in line and str(env_file) in line
    assert key not in line, "the key itself is never printed"


def test_each_generated_key_is_different(tmp_path: Path) -> None:
    first = ensure_model_api_key(tmp_path / "a.env", {})
    second = ensure_model_api_key(tmp_path / "b.env", {})
    assert first != second


def test_a_key_is_added_to_an_existing_env_file_keeping_the_rest(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# mine\nSERVER_NAME=chat.example.com\nDEVICE=cpu")  # no final newline
    env_file.chmod(0o640)
    key = ensure_model_api_key(env_file, {})
    assert env_file.read_text().startswith("# mine\nSERVER_NAME=chat.example.com\nDEVICE=cpu\n")
    assert read_env_file(env_file) == {
        "SERVER_NAME": "chat.example.com",
        "DEVICE": "cpu",
        "MODEL_API_KEY": key,
    }
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640  # the operator's choice stays


def test_an_existing_key_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / ".env"
    text = "MODEL_API_KEY='my own key'\nAPP_PORT=9000\n"
    env_file.write_text(text)
    assert ensure_model_api_key(env_file, {}) is None
    assert env_file.read_text() == text
    assert capsys.readouterr().out == ""


def test_a_key_from_the_environment_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    assert ensure_model_api_key(env_file, {"MODEL_API_KEY": "from-the-shell"}) is None
    assert not env_file.exists()


@pytest.mark.parametrize("empty", ["MODEL_API_KEY=", 'MODEL_API_KEY=""', "export MODEL_API_KEY= "])
def test_an_empty_key_line_is_replaced_in_place(tmp_path: Path, empty: str) -> None:
    """An empty value is no key (the doctor warns about it): it gets one, on its own line,
    so that neither reader of .env (the runner, the Makefile's `. ./.env`) sees two."""
    env_file = tmp_path / ".env"
    env_file.write_text(f"A=1\n{empty}\nB=2\n")
    key = ensure_model_api_key(env_file, {"MODEL_API_KEY": ""})
    lines = env_file.read_text().splitlines()
    assert lines == ["A=1", f"MODEL_API_KEY={key}", "B=2"]


def test_the_generated_key_survives_the_shell_and_compose_readers(tmp_path: Path) -> None:
    """The Makefile sources .env with `set -a; . ./.env`; compose reads it for
    ${MODEL_API_KEY}: the key must need no quoting."""
    env_file = tmp_path / ".env"
    key = ensure_model_api_key(env_file, {})
    shell = subprocess.run(
        ["bash", "-c", f'set -a; . {env_file}; printf %s "$MODEL_API_KEY"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == key


def test_env_file_is_git_ignored() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=ROOT, capture_output=True, check=False
    )
    assert result.returncode == 0, ".env holds the key: it must be git-ignored"
