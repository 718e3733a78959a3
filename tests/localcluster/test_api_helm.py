"""Helm 4 (through helm-python-sdk: Helm's own Go engine, server-side apply) against the API server."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.localcluster.api_harness import HTTP, APIServerProcess

helm = pytest.importorskip("helm_python")

CHART = {
    "Chart.yaml": """
        apiVersion: v2
        name: demo
        version: 0.1.0
        appVersion: "1.0"
        """,
    "values.yaml": """
        greeting: hello
        extra: true
        replicas: 1
        """,
    "crds/gadgets.yaml": """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: gadgets.helm.test}
        spec:
          group: helm.test
          scope: Namespaced
          names: {plural: gadgets, singular: gadget, kind: Gadget}
          versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec: {type: object, properties: {level: {type: integer, default: 1}}}
        """,
    "templates/configmap.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
          labels: {app: {{ .Release.Name }}}
        data:
          greeting: {{ .Values.greeting | quote }}
          {{- if .Values.extra }}
          extra: "yes"
          {{- end }}
        """,
    "templates/secret.yaml": """
        apiVersion: v1
        kind: Secret
        metadata: {name: {{ .Release.Name }}-secret}
        stringData: {token: abc}
        """,
    "templates/serviceaccount.yaml": """
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: {{ .Release.Name }}-sa}
        """,
    "templates/service.yaml": """
        apiVersion: v1
        kind: Service
        metadata: {name: {{ .Release.Name }}-svc}
        spec:
          selector: {app: {{ .Release.Name }}}
          ports: [{name: http, port: 80, targetPort: 8080}]
        """,
    "templates/deployment.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: {{ .Release.Name }}-deploy}
        spec:
          replicas: {{ .Values.replicas }}
          selector: {matchLabels: {app: {{ .Release.Name }}}}
          template:
            metadata: {labels: {app: {{ .Release.Name }}}}
            spec:
              serviceAccountName: {{ .Release.Name }}-sa
              containers:
              - name: main
                image: busybox:1.36
                env: [{name: GREETING, value: {{ .Values.greeting | quote }}}]
        """,
    "templates/role.yaml": """
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: {{ .Release.Name }}-role}
        rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: {{ .Release.Name }}-rb}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: {{ .Release.Name }}-role}
        subjects: [{kind: ServiceAccount, name: {{ .Release.Name }}-sa, namespace: {{ .Release.Namespace }}}]
        """,
    "templates/gadget.yaml": """
        apiVersion: helm.test/v1
        kind: Gadget
        metadata: {name: {{ .Release.Name }}-gadget}
        spec: {}
        """,
}


def write_chart(root: Path) -> Path:
    chart = root / "demo"
    for rel, text in CHART.items():
        path = chart / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return chart


def test_helm_install_upgrade_uninstall(
    apiserver: APIServerProcess, http: HTTP, namespace: str, tmp_path: Path
) -> None:
    chart = write_chart(tmp_path)
    cfg = helm.Config(kubeconfig_path=str(apiserver.kubeconfig), namespace=namespace)
    try:
        cfg.check_reachable()
        release: Any = cfg.install(str(chart), "rel", {"greeting": "hi"}, namespace=namespace, timeout=60)
        assert release["info"]["status"] == "deployed" if "info" in release else True
        ns = f"/api/v1/namespaces/{namespace}"
        cm = http.get(f"{ns}/configmaps/rel-config").body
        assert cm["data"] == {"greeting": "hi", "extra": "yes"}
        assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert cm["metadata"]["annotations"]["meta.helm.sh/release-name"] == "rel"
        assert any(m["operation"] == "Apply" for m in cm["metadata"]["managedFields"]), cm["metadata"][
            "managedFields"
        ]
        assert http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/rel-deploy").status == 200
        assert http.get(f"{ns}/services/rel-svc").body["spec"]["clusterIP"].startswith("10.")
        assert http.get(f"/apis/helm.test/v1/namespaces/{namespace}/gadgets/rel-gadget").body["spec"] == {
            "level": 1
        }
        stored = http.get(f"{ns}/secrets?labelSelector=owner%3Dhelm,name%3Drel").body["items"]
        assert [s["metadata"]["name"] for s in stored] == ["sh.helm.release.v1.rel.v1"]

        cfg.upgrade(
            str(chart),
            "rel",
            {"greeting": "bye", "extra": False, "replicas": 3},
            namespace=namespace,
            timeout=60,
        )
        cm = http.get(f"{ns}/configmaps/rel-config").body
        assert cm["data"] == {"greeting": "bye"}  # a key the chart no longer renders is removed
        deploy = http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/rel-deploy").body
        assert deploy["spec"]["replicas"] == 3 and deploy["metadata"]["generation"] == 2
        assert deploy["spec"]["template"]["spec"]["containers"][0]["env"] == [
            {"name": "GREETING", "value": "bye"}
        ]
        history = cfg.history("rel")
        assert len(history) == 2
        listed = cfg.list()
        assert "rel" in str(listed)

        cfg.uninstall("rel", timeout=60)
        for path in (
            f"{ns}/configmaps/rel-config",
            f"{ns}/secrets/rel-secret",
            f"{ns}/services/rel-svc",
            f"{ns}/serviceaccounts/rel-sa",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/rel-deploy",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/rel-role",
            f"/apis/helm.test/v1/namespaces/{namespace}/gadgets/rel-gadget",
        ):
            assert http.get(path).status == 404, path
        assert http.get(f"{ns}/secrets?labelSelector=owner%3Dhelm").body["items"] == []
        # CRDs from crds/ stay, as Helm documents
        assert (
            http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.helm.test").status
            == 200
        )
    finally:
        cfg.close()
