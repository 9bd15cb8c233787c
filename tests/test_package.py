"""Tests of the package surface: light import, public names, version."""

from __future__ import annotations

import subprocess
import sys

import tpv


def test_import_tpv_does_not_import_model_libraries() -> None:
    """`import tpv` loads no transformers, peft or datasets (checked in a fresh interpreter)."""
    code = (
        "import sys, tpv\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'peft', 'datasets'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve() -> None:
    """Every name in tpv.__all__ resolves (lazy names included)."""
    for name in tpv.__all__:
        assert getattr(tpv, name) is not None, name


def test_errors_derive_from_one_base() -> None:
    """Every tpv error class derives from TPVError."""
    from tpv import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), tpv.TPVError)
