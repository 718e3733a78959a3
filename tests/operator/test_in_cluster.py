"""The one in-cluster connection (trainjob_operator.in_cluster) that the operator, the coordinator's
status sink and the CLI share: TLS with the mounted CA unless plain HTTP is asked for explicitly."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from trainjob_operator.cli import build_parser
from trainjob_operator.in_cluster import InClusterError, in_cluster_access

POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
# A CA certificate that ssl can load: the system bundle's first one.
SYSTEM_BUNDLE = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


def account(tmp_path: Path, *, ca: str | None) -> Path:
    (tmp_path / "token").write_text("t0\n")
    (tmp_path / "namespace").write_text("ml")
    if ca is not None:
        (tmp_path / "ca.crt").write_text(ca)
    return tmp_path


def first_certificate() -> str:
    text = SYSTEM_BUNDLE.read_text()
    end = "-----END CERTIFICATE-----"
    return text[text.index("-----BEGIN CERTIFICATE-----") : text.index(end) + len(end)] + "\n"


def test_outside_a_pod_there_is_no_in_cluster_access(tmp_path: Path) -> None:
    directory = account(tmp_path, ca=None)
    assert in_cluster_access(plain_http=False, account_dir=directory, environ={}) is None
    # client-go needs both variables, and a token must be mounted.
    host_only = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert in_cluster_access(plain_http=False, account_dir=directory, environ=host_only) is None
    assert in_cluster_access(plain_http=True, account_dir=tmp_path / "none", environ=POD_ENV) is None


def test_tls_with_the_mounted_ca_and_a_token_read_at_every_request(tmp_path: Path) -> None:
    directory = account(tmp_path, ca=first_certificate())
    access = in_cluster_access(plain_http=False, account_dir=directory, environ=POD_ENV)
    assert access is not None
    assert access.server == "https://10.0.0.1:6443"
    assert access.ca_file == directory / "ca.crt" and not access.plain_http
    assert access.namespace == "ml"
    assert isinstance(access.ssl_context(), ssl.SSLContext)
    configuration = access.kubernetes_configuration()
    assert configuration.host == "https://10.0.0.1:6443"
    assert configuration.ssl_ca_cert == str(directory / "ca.crt")
    assert configuration.get_api_key_with_prefix("authorization") == "Bearer t0"
    # The kubelet rotates the projected token: the next request carries the new one.
    (directory / "token").write_text("t1\n")
    assert access.token() == "t1"
    assert configuration.get_api_key_with_prefix("authorization") == "Bearer t1"


@pytest.mark.parametrize("ca", ["", None], ids=["empty ca.crt", "no ca.crt"])
def test_a_missing_ca_is_refused_not_taken_for_plain_http(tmp_path: Path, ca: str | None) -> None:
    directory = account(tmp_path, ca=ca)
    with pytest.raises(InClusterError) as error:
        in_cluster_access(plain_http=False, account_dir=directory, environ=POD_ENV)
    assert str(error.value) == (
        f"no cluster CA in {directory / 'ca.crt'} (missing or empty), so the API server at "
        "https://10.0.0.1:6443 cannot be verified; a cluster that serves plain HTTP is named with "
        "--api-plain-http"
    )


def test_plain_http_only_when_asked_for(tmp_path: Path) -> None:
    directory = account(tmp_path, ca="")
    access = in_cluster_access(plain_http=True, account_dir=directory, environ=POD_ENV)
    assert access is not None
    assert access.server == "http://10.0.0.1:6443" and access.plain_http
    assert access.ssl_context() is None
    assert access.kubernetes_configuration().host == "http://10.0.0.1:6443"


def test_an_ipv6_service_host_is_bracketed(tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    access = in_cluster_access(plain_http=True, account_dir=account(tmp_path, ca=None), environ=environ)
    assert access is not None and access.server == "http://[fd00::1]:443"


def test_the_cli_the_operator_and_the_coordinator_all_take_the_setting() -> None:
    """One flag name on every command that may run in a pod."""
    parser = build_parser()
    for command in (["list"], ["status", "j"], ["operator"]):
        assert parser.parse_args([*command, "--api-plain-http"]).api_plain_http is True
        assert parser.parse_args(command).api_plain_http is False
    coordinator = ["coordinator", "--job=j", "--namespace=ml", "--world-size=1", "--attempt=0"]
    coordinator += ["--storage=file:///s", "--port=0", "--token-file=/t", "--status-sink=kubernetes"]
    assert parser.parse_args([*coordinator, "--api-plain-http"]).api_plain_http is True
