"""The pytest plugin, used by a test project created in a temp dir (pytester): snapshots
missing -> written with --meshplane-update -> matching -> a model edit fails with diff's output;
route cases and explain from Python."""
from __future__ import annotations

import shutil
from pathlib import Path

from tests.paths import REPO

pytest_plugins = ["pytester"]

EXAMPLE = REPO / "examples" / "route-tests"
FRONT = "mesh/shop/virtualNode/front"

TESTS = f'''
def test_front_snapshot(meshplane_snapshot):
    meshplane_snapshot.check("mesh", "{FRONT}")


def test_gateway_snapshot_explicit(meshplane_snapshot):
    meshplane_snapshot.check("mesh", "mesh/shop/virtualGateway/gateway", "snaps/gateway.yaml",
                             placement={{"mode": "explicit", "ingressAddress": "127.0.0.10", "appAddress": "127.0.0.11",
                                         "egressAddress": "127.0.0.12"}})


def test_pricing_snapshot(meshplane_snapshot):
    meshplane_snapshot.check("mesh", "mesh/shop/virtualNode/pricing")


def test_failing_route_cases(meshplane):
    meshplane.assert_cases("failing-cases.yaml")


def test_route_cases(meshplane):
    meshplane.assert_cases("cases.yaml")


def test_explain_from_python(meshplane):
    ex = meshplane.explain("mesh", "{FRONT}", "GET http://catalog.shop.local:8080/ -H 'x-beta: yes'")
    assert ex.route == "beta" and ex.probabilities == {{"catalog-v2": 1.0}}
    results = meshplane.run_cases("failing-cases.yaml")
    assert [r.passed for r in results] == [False, False, False, True]
'''


def _project(pytester) -> Path:
    root = Path(pytester.path)
    shutil.copytree(EXAMPLE / "mesh", root / "mesh")
    shutil.copy(EXAMPLE / "cases.yaml", root / "cases.yaml")
    shutil.copy(EXAMPLE / "failing-cases.yaml", root / "failing-cases.yaml")
    pytester.makepyfile(test_mesh=TESTS)
    return root


def test_snapshots_missing_written_matching_mismatching_and_route_cases(pytester):
    root = _project(pytester)
    first = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    first.assert_outcomes(passed=2, failed=4)
    first.stdout.fnmatch_lines(["*no snapshot*__snapshots__/shop--front--transparent.yaml*--meshplane-update*"])
    first.stdout.fnmatch_lines([  # a failing route case file shows each failure with its explanation
        "*failing-cases.yaml: 1 passed, 3 failed*",
        "*FAIL  wrong target*",
        "*target: expected catalog-v2, got catalog-v1 90%, catalog-v2 10%*",
        "*MATCH  Route catalog-router/main (priority 100)*",
    ])

    updated = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "--meshplane-update", "-k", "snapshot")
    updated.assert_outcomes(passed=3)
    snapshot = root / "__snapshots__" / "shop--front--transparent.yaml"
    assert snapshot.exists() and (root / "snaps" / "gateway.yaml").exists()
    assert "cds_egress_shop_catalog-v1_http_8080" in snapshot.read_text()
    assert "127.0.0.12" in (root / "snaps" / "gateway.yaml").read_text()

    mesh = root / "mesh" / "shop.yaml"
    mesh.write_text(mesh.read_text().replace("catalog-v1, weight: 90}", "catalog-v1, weight: 50}")
                    .replace("catalog-v2, weight: 10}", "catalog-v2, weight: 50}"))
    changed = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-k", "snapshot")
    changed.assert_outcomes(passed=1, failed=2)  # pricing's config does not depend on the catalog route
    changed.stdout.fnmatch_lines([
        "*mesh/shop/virtualNode/front: compiled config differs from snapshot*",
        "*route catalog-router/main: catalog-v1 90% -> 50%, catalog-v2 10% -> 50%*",
        "*weighted_clusters.clusters[[]cds_egress_shop_catalog-v1_http_8080[]].weight: 90 -> 50*",
    ])
    assert "weight: 90" in snapshot.read_text()  # without --meshplane-update nothing is rewritten
