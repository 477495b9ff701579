"""`chatstack doctor`: check the stack layer by layer and say in words what is wrong.

From the bottom up, as the stack is built: GPU and driver, CUDA, Python, PyTorch,
transformers, the model files, the model API, the app service, nginx's config, the TLS
certificate, nginx itself. Settings come from the same environment as the stack: the
process environment with `.env` on top (deploy/run_local.py). Exit status 1 when a check
fails. Run: python -m deploy.doctor [--json]   (or `make doctor`, `chatstack doctor`)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from chatstack.envsettings import SettingsError
from deploy.doctor_checks import CHECKS, CheckResult, Context
from deploy.run_local import ROOT, read_env_file

TAGS = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}


def run_check(check: Callable[[Context], CheckResult], ctx: Context) -> CheckResult:
    """One check; a bad setting or a crash in the check itself is a failed check, never a
    traceback, so the rest of the stack is still diagnosed."""
    try:
        return check(ctx)
    except SettingsError as exc:
        return _broken(check, f"invalid setting: {exc}", "fix it in .env (see .env.example)")
    except Exception as exc:
        return _broken(
            check,
            f"the check itself failed: {type(exc).__name__}: {exc}",
            "this is a bug in deploy/doctor_checks.py; the message above says where",
        )


def _broken(check: Callable[..., CheckResult], message: str, fix: str) -> CheckResult:
    name = check.__name__.removeprefix("check_").replace("_", " ")
    return CheckResult("settings", name, "fail", message, fix)


def run_checks(ctx: Context) -> list[CheckResult]:
    return [run_check(check, ctx) for check in CHECKS]


def render_text(results: Iterable[CheckResult]) -> str:
    results = list(results)
    width = max(len(r.name) for r in results)
    lines = ["chatstack doctor: checking the stack from the hardware up", ""]
    for r in results:
        lines.append(f"{TAGS[r.status]} {r.name:<{width}}  {r.message}")
        if r.fix and r.status in ("warn", "fail"):
            lines.append(f"{'':>6} {'':<{width}}  fix: {r.fix}")
    lines += ["", summary(results)]
    return "\n".join(lines)


def summary(results: Sequence[CheckResult]) -> str:
    failed = [r for r in results if r.status == "fail"]
    warned = [r for r in results if r.status == "warn"]
    if not failed:
        note = f" ({len(warned)} warning{'s' if len(warned) != 1 else ''})" if warned else ""
        return f"All {len(results)} checks passed{note}."
    return (
        f"{len(failed)} of {len(results)} checks failed. Fix the lowest first "
        f"({failed[0].name}): the layers above it depend on it."
    )


def render_json(results: Sequence[CheckResult]) -> str:
    body = {
        "ok": not any(r.status == "fail" for r in results),
        "checks": [r.as_dict() for r in results],
    }
    return json.dumps(body, indent=2, default=str)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chatstack doctor",
        description="Check the chatstack layer by layer (GPU, CUDA, PyTorch, transformers, "
        "model files, services, nginx, certificate) and say what is wrong and how to fix it.",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=ROOT / ".env",
        help="the .env read on top of the environment, as `make run` does (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for each service (default 2)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["doctor"]:  # `chatstack doctor ...`
        args = args[1:]
    options = parse_args(args)
    env = {**os.environ, **read_env_file(options.env_file)}
    results = run_checks(Context(env, timeout=options.timeout))
    print(render_json(results) if options.json else render_text(results), flush=True)
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
