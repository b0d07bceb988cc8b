"""textgym.versions: what a run records, and the one line when the installed versions differ."""

from __future__ import annotations

import platform

import numpy as np
import torch
import transformers

from textgym.versions import ENV_DISTRIBUTIONS, installed_versions, version_drift


def test_installed_versions_name_python_each_distribution_torch_build_and_commit():
    versions = installed_versions()
    assert set(versions) == {"python", *ENV_DISTRIBUTIONS, "torch_cuda", "textgym_commit"}
    assert versions["python"] == platform.python_version()
    assert versions["torch"] == torch.__version__  # with its build: 2.13.0+cpu
    assert versions["transformers"] == transformers.__version__
    assert versions["numpy"] == np.__version__
    assert installed_versions(["no-such-distribution"])["no-such-distribution"] is None


def test_no_drift_when_the_record_is_what_is_installed():
    assert version_drift(installed_versions(), "run/config.json") is None
    assert version_drift(None, "run/config.json") is None  # runs that recorded nothing


def test_drift_is_one_line_naming_each_version_that_differs():
    recorded = installed_versions() | {"torch": "1.13.1+cu117", "numpy": "1.24.0"}
    line = version_drift(recorded, "run/config.json")
    assert "\n" not in line and line.startswith("run/config.json was made with other versions")
    assert f"torch 1.13.1+cu117 (installed: {torch.__version__})" in line
    assert f"numpy 1.24.0 (installed: {np.__version__})" in line
    assert "transformers" not in line and "requirements-lock.txt" in line
    # A distribution recorded but no longer installed.
    assert "ray 2.60.0 (installed: None)" in version_drift(recorded | {"ray": "2.60.0"}, "x")
