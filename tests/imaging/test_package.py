"""The pure modules stand alone: workers, benchmarks and commands use them without Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = [
    "cases.imaging",
    "inference.classifier",
    "inference.domain",
    "inference.domain_fitting",
    "inference.model_input",
    "inference.model_package",
    "inference.shipped_model",
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_it_imports_without_importing_django_or_tensorflow(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'tensorflow', 'keras', 'rest_framework'}))"
    )

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


def test_it_leaves_pydicom_out_of_a_process_that_needs_only_the_rules() -> None:
    # A worker imports the eligibility and age rules at start-up; the decoders load with the first upload.
    probe = "import sys, cases.imaging.eligibility, cases.imaging.age; print('pydicom' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


def test_it_gives_every_public_name_whichever_submodule_was_imported_first() -> None:
    probe = (
        "import cases.imaging.sniff, cases.imaging.decoding, cases.imaging as imaging; "
        "print(all(not isinstance(getattr(imaging, n), type(imaging)) for n in imaging.__all__))"
    )

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "True"
