"""The imaging package stands alone: workers and benchmarks use it without Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_it_imports_without_importing_django() -> None:
    probe = "import sys, cases.imaging; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"
