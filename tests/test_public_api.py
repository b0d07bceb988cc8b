"""The public names of `textgym_agents`: each resolves to the object its module defines, and the
package imports none of them (nor torch) until one is used."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import textgym_agents


def test_importing_the_package_imports_no_agent_module_and_no_torch():
    code = (
        "import sys, textgym_agents; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('textgym_agents.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_public_name_is_the_object_its_module_defines():
    for name in textgym_agents.__all__:
        module = importlib.import_module(textgym_agents._EXPORTS[name])
        assert getattr(textgym_agents, name) is getattr(module, name), name
    assert {"train", "evaluate_run", "load_agent", "SequencePPO"} <= set(dir(textgym_agents))


def test_a_module_path_of_an_earlier_version_is_no_attribute():
    with pytest.raises(AttributeError, match="no attribute 'gpt_policy'"):
        textgym_agents.gpt_policy  # noqa: B018
