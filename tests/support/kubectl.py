"""The real ``kubectl``, for tests that check what a user sees from it.

The binary is the one ``.ci/fetch-helm`` extracts beside Helm (``.cache/helm/kubectl``, v1.33),
or else the machine's own; tests that need it skip, saying which, when there is none.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHED = ROOT / ".cache" / "helm" / "kubectl"


def kubectl_binary() -> str:
    if CACHED.is_file():
        return str(CACHED)
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl: run `make helm` (it extracts kubectl beside helm into .cache/helm) or install one")
    return found


@dataclass
class Kubectl:
    """``kubectl`` with one kubeconfig and namespace; returns (exit code, stdout, stderr)."""

    kubeconfig: Path
    namespace: str

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args]
        # A 1.33 client against a 1.36 server warns about the skew on stderr; harmless.
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr or done.stdout}")
        return done
