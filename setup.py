"""Puts the policy library into the wheel (everything else is in pyproject.toml).

``policies/`` (the *.rego files, their fixture tests, ``waivers.yaml`` and
``organization.yaml``) lives at the repository root, where a spec repository has its own
copy; ``modelops init`` copies it from ``reconciler/library/policies`` in an installed
wheel, or from the checkout's ``policies/`` in an editable install
(:func:`reconciler.gitops.scaffold.policy_library`).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

LIBRARY = Path(__file__).parent / "policies"


class BuildWithPolicyLibrary(build_py):
    """``build_py`` that also copies ``policies/`` to ``reconciler/library/policies``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the checkout's policies/ is found directly
            return
        target = Path(self.build_lib) / "reconciler" / "library" / "policies"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(LIBRARY, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithPolicyLibrary})
