"""The chart's CRDs (helm/market-spine/files/crds/) are byte-for-byte copies of crds/.

crds/ is the source; `.ci/sync-crds` copies it into the chart. No skipping: a missing side fails.
"""

from __future__ import annotations

import subprocess
import sys

from .chartlib import CHART, ROOT

SOURCE = ROOT / "crds"
COPY = CHART / "files" / "crds"
CRD_FILE = "spine.marketspine.io_spineworkitems.yaml"


def test_spineworkitem_crd_exists_on_both_sides() -> None:
    assert (SOURCE / CRD_FILE).is_file(), f"crds/{CRD_FILE} is missing"
    assert (COPY / CRD_FILE).is_file(), f"helm/market-spine/files/crds/{CRD_FILE} is missing (run .ci/sync-crds)"


def test_chart_crds_identical_to_source() -> None:
    sources = {p.name: p.read_bytes() for p in SOURCE.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in COPY.glob("*.yaml")}
    assert sources, "crds/ holds no CRD"
    assert sorted(copies) == sorted(sources), "the chart's CRD files differ from crds/ (run .ci/sync-crds)"
    for name, data in sources.items():
        assert copies[name] == data, f"files/crds/{name} differs from crds/{name} (run .ci/sync-crds)"


def test_sync_script_agrees() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "sync-crds"), "--check"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
