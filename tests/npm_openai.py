"""The official `openai` npm client, installed once into tests/integration/npm_client (its
package-lock.json pins it), for tests that run Node programs against our servers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NPM_CLIENT = Path(__file__).parent / "integration" / "npm_client"


def npm_client_dir() -> Path:
    """The folder whose node_modules holds `openai` (installed by `npm ci` when missing); a
    `.mjs` file written there imports it."""
    npm = shutil.which("npm")
    assert shutil.which("node") and npm, "node and npm are needed for the openai npm client"
    if not (NPM_CLIENT / "node_modules" / "openai").is_dir():
        install = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NPM_CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert install.returncode == 0, install.stdout + install.stderr
    return NPM_CLIENT
