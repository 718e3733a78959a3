"""The dashboard's role, with RBAC enforced: `trainjob dashboard` running under exactly the chart's
dashboard ClusterRole serves the job list, a job's page and a rank's log (the rules are
sufficient); each rule is needed (the operation it serves is refused without it); and the role
writes nothing and reads no Secret.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.security.security_support import JOB_NAMESPACE, Secure, chart_values, wait_for
from tests.support.chart import NAMESPACE, by_kind, component, objects
from tests.support.dashboard import serving_dashboard

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JSON = dict[str, Any]
JOB = "dash-probe"
POD = f"{JOB}-0-0"
GREETING = "hello from rank 0"
JOBS = f"/apis/trainjob.dev/v1alpha1/namespaces/{JOB_NAMESPACE}/trainjobs"
WATCH = "watch=true&timeoutSeconds=1"
# Each rule of the chart's dashboard ClusterRole -> the requests the dashboard makes with it.
NEEDED: dict[tuple[tuple[str, ...], ...], list[str]] = {
    (("trainjob.dev",), ("trainjobs",), ("list", "watch")): [
        "/apis/trainjob.dev/v1alpha1/trainjobs",
        f"/apis/trainjob.dev/v1alpha1/trainjobs?{WATCH}",
    ],
    (("",), ("pods",), ("list", "watch")): ["/api/v1/pods", f"/api/v1/pods?{WATCH}"],
    (("",), ("events",), ("list", "watch")): ["/api/v1/events", f"/api/v1/events?{WATCH}"],
    (("",), ("pods/log",), ("get",)): [
        f"/api/v1/namespaces/{JOB_NAMESPACE}/pods/{POD}/log?container=trainer"
    ],
}


def rule_key(rule: JSON) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(rule.get(k) or ()) for k in ("apiGroups", "resources", "verbs"))


def dashboard_role(secure: Secure) -> JSON:
    values = {**chart_values(secure.seaweedfs), "dashboard": {"enabled": True}}
    (role,) = by_kind(component(objects(values), "dashboard"), "ClusterRole")
    return dict(role)


def bound_token(secure: Secure, name: str, rules: list[JSON]) -> str:
    """A ServiceAccount bound cluster-wide to a ClusterRole of exactly `rules`; its token."""
    secure.admin(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {"metadata": {"name": name}, "rules": rules},
    )
    secure.admin("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": name}})
    secure.admin(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        },
    )
    return secure.token_for(NAMESPACE, name)


@pytest.fixture(scope="module")
def probe_job(secure: Secure) -> None:
    """A suspended TrainJob, an Event about it and a running pod of it that logs a greeting."""
    secure.admin(
        "POST",
        JOBS,
        {
            "apiVersion": "trainjob.dev/v1alpha1",
            "kind": "TrainJob",
            "metadata": {"name": JOB},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {"containers": [{"name": "trainer", "image": "x", "command": ["true"]}]}
                },
                "storage": {"uri": f"s3://trainjob/security/{JOB}", "credentialsSecret": "s3-creds"},
            },
        },
    )
    secure.admin(
        "POST",
        f"/api/v1/namespaces/{JOB_NAMESPACE}/pods",
        {
            "metadata": {"name": POD, "labels": {"trainjob.dev/name": JOB, "trainjob.dev/rank": "0"}},
            "spec": {
                "containers": [
                    {
                        "name": "trainer",
                        "image": "x",
                        "command": [
                            sys.executable,
                            "-c",
                            f"print({GREETING!r}, flush=True); import time; time.sleep(120)",
                        ],
                    }
                ]
            },
        },
    )
    wait_for(
        "the probe pod's log",
        lambda: (
            GREETING in secure.text(f"/api/v1/namespaces/{JOB_NAMESPACE}/pods/{POD}/log?container=trainer")
        ),
        60,
        secure.diagnose,
    )


@pytest.fixture(scope="module")
def dashboard(secure: Secure, probe_job: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`trainjob dashboard -A` with the token of a ServiceAccount bound to the chart's role only."""
    role = dashboard_role(secure)
    token = bound_token(secure, "probe-dashboard", role["rules"])
    directory = tmp_path_factory.mktemp("dashboard")
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": secure.url}}],
                "users": [{"name": "dashboard", "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "dashboard"}}],
                "current-context": "local",
            }
        )
    )
    with serving_dashboard(directory, "-A", "--kubeconfig", str(kubeconfig)) as url:
        yield url


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the local dashboard
        return json.loads(response.read())


def test_the_dashboard_under_its_chart_role_serves_every_page(dashboard: str) -> None:
    listing = get_json(dashboard + "api/jobs")
    assert listing["errors"] == [], listing["errors"]
    assert f"{JOB_NAMESPACE}/{JOB}" in [row["key"] for row in listing["jobs"]]
    view = get_json(dashboard + f"api/jobs/{JOB_NAMESPACE}/{JOB}")
    assert view["errors"] == []
    assert [pod["name"] for pod in view["pods"]] == [POD]
    # Storage cannot be read without Secrets (the role reads none): the page says so.
    assert "Secret" in (view["storageError"] or ""), view["storageError"]
    deadline = time.monotonic() + 30
    text = ""
    with urllib.request.urlopen(  # noqa: S310
        dashboard + f"api/jobs/{JOB_NAMESPACE}/{JOB}/log?rank=0&attempt=0", timeout=30
    ) as stream:
        while GREETING not in text and time.monotonic() < deadline:
            text += stream.readline().decode()
    assert GREETING in text, text


def test_each_dashboard_rule_is_needed_and_none_writes(secure: Secure, probe_job: None) -> None:
    rules: list[JSON] = dashboard_role(secure)["rules"]
    assert sorted(map(rule_key, rules)) == sorted(NEEDED), "the table must list each rule of the chart"
    full = bound_token(secure, "probe-dashboard-full", rules)
    failures = []
    for index, rule in enumerate(rules):
        without = bound_token(secure, f"probe-dashboard-without-{index}", [r for r in rules if r is not rule])
        for path in NEEDED[rule_key(rule)]:
            with_rule = secure.request("GET", path, token=full).status
            without_rule = secure.request("GET", path, token=without).status
            if with_rule != 200 or without_rule != 403:
                failures.append(f"{rule_key(rule)}: GET {path}: {with_rule} / {without_rule}")
    assert not failures, "\n".join(failures)
    # Read-only: no write to a job, no Secret read.
    patch = secure.request(
        "PATCH",
        f"{JOBS}/{JOB}?dryRun=All",
        {"spec": {"suspend": False}},
        token=full,
        content_type="application/merge-patch+json",
    )
    assert patch.status == 403
    assert (
        secure.request("GET", f"/api/v1/namespaces/{JOB_NAMESPACE}/secrets/s3-creds", token=full).status
        == 403
    )
