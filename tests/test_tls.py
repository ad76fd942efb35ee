"""TLS between members: https round trips to a platform node, a regulator node and the
chain, mutual TLS refusing clients without a certificate or with one from another CA, the
bind policy of the config files (TLS beyond loopback, or ``allow_plaintext`` with a
warning), the console's ``Secure`` cookie behind uvicorn's TLS, and the CLI's TLS options.

Certificates are made for the run with ``cryptography`` (:mod:`ledger_node.demo.certs`):
the consortium's CA, a certificate per server and client, and a stranger's CA. Servers
bind 127.0.0.1 only; non-loopback binds are checked at config load, never bound.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from api.regulator_app import create_regulator_app
from api.regulator_server import serve_regulator_file
from api.server import PlatformServer, serve_platform_file
from ledger_node.chain.adapter import LedgerChain
from ledger_node.chain.rpc_server import ChainServer
from ledger_node.cli import main as cli
from ledger_node.cli.chain import run_chain
from ledger_node.client.sdk import NodeClient, PlatformClient, RegulatorClient
from ledger_node.crypto.keyfiles import MemberKeys, write_member_keys
from ledger_node.demo.certs import CertFiles, issue, new_ca
from ledger_node.errors import ChainError, InvalidConfig
from ledger_node.http_settings import Settings
from ledger_node.platform.config import load_serve_config
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.auth import sign_request
from ledger_node.regulator.config import load_regulator_config
from ledger_node.regulator.node import (
    HttpLeafSource,
    RegulatorConfig,
    RegulatorNode,
    node_audience,
)
from ledger_node.tls import ClientTls, ServerTls, check_bind, is_loopback
from tests.api_support import Consortium, random_leaves
from tests.console_support import signed_console_login
from tests.regulator_support import PERSON_TO_MERCHANT, payment, wait_anchored


@dataclass(frozen=True)
class Pki:
    """The consortium's CA with a server and a client certificate, and a stranger's CA with
    a client certificate of its own."""

    ca: Path
    server: CertFiles
    client: CertFiles
    stranger_ca: Path
    stranger: CertFiles

    def server_tls(self, mutual: bool = True) -> ServerTls:
        """The server certificate, requiring client certificates from the CA if ``mutual``."""
        return ServerTls(self.server.cert, self.server.key, self.ca if mutual else None)

    @property
    def member(self) -> ClientTls:
        """A member's client: trusts the CA, presents its certificate."""
        return ClientTls(self.ca, self.client.cert, self.client.key)

    @property
    def anonymous(self) -> ClientTls:
        """A client that trusts the CA but has no certificate."""
        return ClientTls(self.ca)

    @property
    def outsider(self) -> ClientTls:
        """A client whose certificate chains to another CA."""
        return ClientTls(self.ca, self.stranger.cert, self.stranger.key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = new_ca(root / "consortium", "Consortium CA")
    other = new_ca(root / "other", "Another CA")
    return Pki(ca.cert, issue(ca, root / "consortium", "node"),
               issue(ca, root / "consortium", "client"), other.cert,
               issue(other, root / "other", "stranger"))


@pytest.fixture(scope="module")
def https_node(node: PlatformNode, pki: Pki) -> Iterator[PlatformServer]:
    """unionpay's node over https with mutual TLS (127.0.0.1)."""
    server = PlatformServer(create_app(node), tls=pki.server_tls())
    server.start()
    yield server
    server.stop()


def refused(url: str, tls: ClientTls) -> bool:
    """Whether a request to ``url`` with ``tls`` fails at the TLS layer."""
    try:
        httpx.get(url, verify=tls.ssl_context(), timeout=10)
    except httpx.TransportError:
        return True
    return False


# ---------------------------------------------------------------------- round trips


def test_platform_node_round_trip_over_https(consortium: Consortium, node: PlatformNode,
                                             https_node: PlatformServer, pki: Pki) -> None:
    assert https_node.url.startswith("https://127.0.0.1:")
    party = consortium.unionpay
    start = node.size()
    with PlatformClient(https_node.url, "unionpay", party.account.address, party.sm2_key,
                        tls=pki.member) as client:
        receipts = client.submit_leaves(random_leaves(5, seed=11))
    assert [r.index for r in receipts] == list(range(start, start + 5))
    with NodeClient(https_node.url, tls=pki.member) as reader:
        assert reader.health()["platform"] == "unionpay"
        bundle = reader.bundle(start + 4, timeout=20)
        assert bundle.index == start + 4
    # the server's certificate is verified: without the consortium CA there is no connection
    with pytest.raises(httpx.ConnectError), NodeClient(https_node.url, retries=0) as stranger:
        stranger.health()


def test_mutual_tls_refuses_a_client_without_a_certificate_or_from_another_ca(
        node: PlatformNode, https_node: PlatformServer, pki: Pki) -> None:
    health = https_node.url + "/v1/health"
    assert not refused(health, pki.member)
    assert refused(health, pki.anonymous)
    assert refused(health, pki.outsider)
    # without client_ca, anyone who trusts the server's CA is served
    open_server = PlatformServer(create_app(node), tls=pki.server_tls(mutual=False))
    open_server.start()
    try:
        assert not refused(open_server.url + "/v1/health", pki.anonymous)
        assert httpx.get(open_server.url + "/v1/health", verify=pki.anonymous.ssl_context(),
                         timeout=10).status_code == 200
    finally:
        open_server.stop()


@pytest.fixture
def https_regulator(consortium: Consortium, node: PlatformNode, https_node: PlatformServer,
                    pki: Pki, tmp_path: Path) -> Iterator[tuple[RegulatorNode, str]]:
    """pboc's regulator node following unionpay's https node with its client certificate,
    its own API over https with mutual TLS."""
    pboc = consortium.pboc
    source = HttpLeafSource(RegulatorClient(https_node.url, pboc.account.address, pboc.sm2_key,
                                            retries=0, tls=pki.member))
    regulator = RegulatorNode(RegulatorConfig(name="pboc", store_path=tmp_path / "pboc.db"),
                              consortium.chain, [pboc.sm2_key], {"unionpay": [source]})
    server = PlatformServer(create_regulator_app(regulator), tls=pki.server_tls())
    server.start()
    try:
        yield regulator, server.url
    finally:
        server.stop()
        regulator.stop()


def test_regulator_node_follows_and_serves_over_https(
        consortium: Consortium, node: PlatformNode, https_node: PlatformServer, pki: Pki,
        https_regulator: tuple[RegulatorNode, str]) -> None:
    regulator, url = https_regulator
    party = consortium.unionpay
    records = [payment("unionpay", n, "110101199003070011", "91350100M000100Y43", 100 + n)
               for n in range(3)]
    with PlatformClient(https_node.url, "unionpay", party.account.address, party.sm2_key,
                        regulator_key=consortium.pboc.sm2_key.public_key(),
                        tls=pki.member) as client:
        client.submit_records(records, kinds=lambda record: PERSON_TO_MERCHANT)
    wait_anchored(node, node.size())
    regulator.sync()  # the follower fetched the leaves over https with its certificate
    assert regulator.record_count() >= 3
    # the only faults are the escrow-less leaves other tests submitted: nothing unreachable
    assert {f.kind for f in regulator.faults()} <= {"unreadable-escrow"}
    pboc = consortium.pboc
    headers = sign_request(pboc.sm2_key, pboc.account.address, "GET", "/v1/ingest",
                           audience=node_audience("pboc"))
    with httpx.Client(base_url=url, verify=pki.member.ssl_context(), timeout=10) as http:
        answer = http.get("/v1/ingest", headers=headers)
    assert answer.status_code == 200 and answer.json()["records"] >= 3
    assert refused(url + "/v1/health", pki.anonymous)
    assert refused(url + "/v1/health", pki.outsider)


def test_chain_round_trip_over_https_with_mutual_tls(pki: Pki) -> None:
    with ChainServer(LedgerChain.embedded(), ssl_context=pki.server_tls().context()) as server:
        assert server.url.startswith("https://127.0.0.1:")
        chain = LedgerChain.from_rpc(server.url, **pki.member.requests_options())
        assert chain.block_number() >= 0
        for client in (pki.anonymous, pki.outsider, ClientTls()):  # ClientTls(): system CAs
            with pytest.raises(ChainError):
                LedgerChain.from_rpc(server.url, attempts=1, **client.requests_options())
    # plain HTTP on loopback is unchanged
    with ChainServer(LedgerChain.embedded()) as plain:
        assert plain.url.startswith("http://")
        assert LedgerChain.from_rpc(plain.url).block_number() >= 0


def test_the_console_cookie_is_secure_behind_uvicorns_tls(
        consortium: Consortium, node: PlatformNode, pki: Pki, tmp_path: Path) -> None:
    regulator = RegulatorNode(RegulatorConfig(name="pboc", store_path=tmp_path / "pboc.db"),
                              consortium.chain, [consortium.pboc.sm2_key], {})
    app = create_regulator_app(regulator)
    try:
        for tls, secure in ((pki.server_tls(mutual=False), True), (None, False)):
            server = PlatformServer(app, tls=tls)
            server.start()
            try:
                verify: Any = pki.anonymous.ssl_context() if tls else True
                with httpx.Client(base_url=server.url, verify=verify, timeout=10) as http:
                    login = signed_console_login(server.url, consortium.pboc, http=http)
                    token = login.json()["login_path"].split("#login=")[1]
                    opened = http.post("/console/api/session", json={"token": token},
                                       headers={"X-JL-Console": "1"})
                assert opened.status_code == 200
                cookie = opened.headers["set-cookie"]
                assert cookie.startswith("jl_console=") and "HttpOnly" in cookie
                assert ("Secure" in cookie) is secure, cookie
            finally:
                server.stop()
    finally:
        regulator.stop()


# ---------------------------------------------------------------------- the bind policy


PLATFORM = """
[node]
platform = "unionpay"
store = "unionpay.db"

[http]
port = 8700
{http}

[keys]
sm2 = "keys/unionpay.sm2.pem"
account = "keys/unionpay.account.key"

[chain]
deployment = "deployment.json"
{tls}
"""
REGULATOR = """
[regulator]
name = "pboc"
store = "pboc-regulator.db"

[platforms]
unionpay = "https://ledger.unionpay.example:8443"

[http]
port = 8790
{http}

[keys]
sm2 = "keys/pboc.sm2.pem"
account = "keys/pboc.account.key"

[chain]
deployment = "deployment.json"
{tls}
"""
LOADERS = {"platform": (PLATFORM, load_serve_config),
           "regulator": (REGULATOR, load_regulator_config)}


def write(tmp_path: Path, role: str, http: str, tls: str = "") -> Any:
    """Load a ``role`` config with these ``[http]`` lines and ``[tls]`` table text."""
    template, load = LOADERS[role]
    path = tmp_path / f"{role}.toml"
    path.write_text(template.format(http=http, tls=tls))
    return load(path)


@pytest.fixture
def certs_dir(tmp_path: Path, pki: Pki) -> Path:
    """``tmp_path/tls`` holding the consortium CA, the node's and the stranger's files."""
    directory = tmp_path / "tls"
    directory.mkdir()
    for source, name in ((pki.ca, "ca.pem"), (pki.server.cert, "node.pem"),
                         (pki.server.key, "node.key"), (pki.stranger.key, "stranger.key")):
        (directory / name).write_bytes(source.read_bytes())
    return directory


@pytest.mark.parametrize("role", ["platform", "regulator"])
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.11", "ledger.unionpay.example", "::"])
def test_beyond_loopback_without_tls_is_refused_at_load(tmp_path: Path, role: str,
                                                        host: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        write(tmp_path, role, f'host = "{host}"')
    message = str(raised.value)
    assert f"http.host {host!r} is not a loopback address" in message
    assert "http.tls_cert" in message and "http.allow_plaintext = true" in message


@pytest.mark.parametrize("role", ["platform", "regulator"])
def test_allow_plaintext_beyond_loopback_loads_with_a_warning(tmp_path: Path,
                                                              role: str) -> None:
    config = write(tmp_path, role, 'host = "0.0.0.0"\nallow_plaintext = true')
    assert config.allow_plaintext and config.server_tls is None
    warning = config.plaintext_warning
    assert warning is not None and warning.startswith("WARNING: serving plain HTTP on 0.0.0.0")
    assert config.url == f"http://127.0.0.1:{config.port}"
    # on loopback there is nothing to warn about
    assert write(tmp_path, role, 'host = "127.0.0.1"').plaintext_warning is None
    assert write(tmp_path, role, 'host = "localhost"').plaintext_warning is None


@pytest.mark.parametrize("role", ["platform", "regulator"])
def test_serve_warns_before_anything_else(tmp_path: Path, role: str) -> None:
    """``jointledger serve`` gives the warning first; here the key files are missing, so it
    stops right after, before any socket is bound."""
    template, _ = LOADERS[role]
    path = tmp_path / f"{role}.toml"
    path.write_text(template.format(http='host = "0.0.0.0"\nallow_plaintext = true', tls=""))
    warnings: list[str] = []
    with pytest.raises(InvalidConfig, match="key files"):
        if role == "platform":
            serve_platform_file(path, warn=warnings.append)
        else:
            serve_regulator_file(path, warn=warnings.append)
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: serving plain HTTP on 0.0.0.0")


@pytest.mark.parametrize("role", ["platform", "regulator"])
def test_tls_beyond_loopback_loads_with_paths_relative_to_the_file(
        tmp_path: Path, role: str, certs_dir: Path) -> None:
    config = write(tmp_path, role, 'host = "0.0.0.0"\ntls_cert = "tls/node.pem"\n'
                   'tls_key = "tls/node.key"\nclient_ca = "tls/ca.pem"',
                   '\n[tls]\nca = "tls/ca.pem"\nclient_cert = "tls/node.pem"\n'
                   'client_key = "tls/node.key"\n')
    base = tmp_path.resolve()
    assert config.server_tls == ServerTls(base / "tls/node.pem", base / "tls/node.key",
                                          base / "tls/ca.pem")
    assert config.client_tls == ClientTls(base / "tls/ca.pem", base / "tls/node.pem",
                                          base / "tls/node.key")
    assert config.plaintext_warning is None
    assert config.url.startswith("https://127.0.0.1:")


@pytest.mark.parametrize("role", ["platform", "regulator"])
@pytest.mark.parametrize(("http", "tls", "message"), [
    ('tls_cert = "tls/node.pem"', "", "http.tls_key is missing"),
    ('tls_key = "tls/node.key"', "", "http.tls_cert is missing"),
    ('client_ca = "tls/ca.pem"', "", "http.client_ca needs http.tls_cert"),
    ('tls_cert = "tls/absent.pem"\ntls_key = "tls/node.key"', "",
     "http.tls_cert: cannot read"),
    ('tls_cert = "tls/node.pem"\ntls_key = "tls/stranger.key"', "",
     "http.tls_cert / http.tls_key: "),
    ('tls_cert = "tls/node.pem"\ntls_key = "tls/node.key"\nclient_ca = "tls/node.key"', "",
     "http.client_ca: "),
    ("allow_plaintext = 1", "", "http.allow_plaintext must be true or false"),
    ("", '\n[tls]\nclient_cert = "tls/node.pem"\n', "tls.client_key is missing"),
    ("", '\n[tls]\nca = "tls/absent.pem"\n', "tls.ca: cannot read"),
    ("", '\n[tls]\nca = "tls/ca.pem"\nclient_cert = "tls/node.pem"\n'
         'client_key = "tls/stranger.key"\n', "tls.client_cert / tls.client_key: "),
    ("", '\n[tls]\ncert = "tls/node.pem"\n', "[tls] has unknown key 'cert'"),
])
def test_every_tls_mistake_names_its_key(tmp_path: Path, certs_dir: Path, role: str,
                                         http: str, tls: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        write(tmp_path, role, http, tls)
    assert message in str(raised.value)


def test_the_bind_policy() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.0.2.1", "example.org"))
    tls = ServerTls(Path("c.pem"), Path("k.pem"))
    assert check_bind("192.0.2.1", tls, False) is None
    assert check_bind("192.0.2.1", None, True) is not None
    with pytest.raises(InvalidConfig, match="http.host is empty"):
        check_bind("", tls, False)


def test_the_chain_refuses_plain_http_beyond_loopback_before_binding(pki: Pki) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ChainServer(LedgerChain.embedded(), "0.0.0.0")
    with pytest.raises(InvalidConfig, match="--host '0.0.0.0' is not a loopback address"):
        run_chain("0.0.0.0", 0)
    with pytest.raises(InvalidConfig, match="--tls-cert: cannot read"):
        run_chain("127.0.0.1", 0, tls=ServerTls(Path("absent.pem"), pki.server.key))


def test_the_chain_command_checks_its_tls_options(capsys: pytest.CaptureFixture[str],
                                                  pki: Pki) -> None:
    assert cli.main(["chain", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-plaintext" in capsys.readouterr().err
    assert cli.main(["chain", "--port", "0", "--tls-cert", str(pki.server.cert)]) == 2
    assert "--tls-key is missing" in capsys.readouterr().err
    assert cli.main(["chain", "--port", "0", "--client-ca", str(pki.ca)]) == 2
    assert "--client-ca needs --tls-cert" in capsys.readouterr().err


# ---------------------------------------------------------------------- the CLI


def test_the_cli_reaches_an_https_node_with_its_tls_options(
        https_node: PlatformServer, node: PlatformNode, pki: Pki,
        capsys: pytest.CaptureFixture[str]) -> None:
    wait_anchored(node, node.size())
    options = ["--ca", str(pki.ca), "--client-cert", str(pki.client.cert),
               "--client-key", str(pki.client.key)]
    assert cli.main(["checkpoints", "--url", https_node.url, *options]) == 0
    assert "checkpoint(s)" in capsys.readouterr().out
    assert cli.main(["proof", "0", "--url", https_node.url, *options]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 0
    assert cli.main(["proof", "0", "--url", https_node.url, "--ca", str(pki.ca),
                     "--client-cert", str(pki.client.cert)]) == 2
    assert "--client-key is missing" in capsys.readouterr().err


def test_the_regulators_commands_reach_its_node_over_mutual_tls(
        consortium: Consortium, https_regulator: tuple[RegulatorNode, str], pki: Pki,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``jointledger alerts`` signs with the regulator's keys and trusts and presents the
    config's ``[tls]``: the node's mutual TLS admits it; without a certificate it is refused."""
    _, url = https_regulator
    pboc = consortium.pboc
    write_member_keys(tmp_path, "pboc", MemberKeys(pboc.sm2_key, pboc.account))
    consortium.deployment.save(tmp_path / "deployment.json")
    port = url.rsplit(":", 1)[1]

    def config(tls: str) -> Path:
        path = tmp_path / "pboc-regulator.toml"
        path.write_text(f"""
[regulator]
name = "pboc"
store = "unused.db"

[http]
port = {port}
tls_cert = "{pki.server.cert}"
tls_key = "{pki.server.key}"
client_ca = "{pki.ca}"

[keys]
sm2 = "pboc.sm2.pem"
account = "pboc.account.key"

[chain]
deployment = "deployment.json"
{tls}
""")
        return path

    member_tls = (f'[tls]\nca = "{pki.ca}"\nclient_cert = "{pki.client.cert}"\n'
                  f'client_key = "{pki.client.key}"\n')
    assert cli.main(["alerts", "--config", str(config(member_tls)), "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), (list, dict))
    assert cli.main(["alerts", "--config", str(config(f'[tls]\nca = "{pki.ca}"\n'))]) == 1
    assert "cannot reach the regulator node at https://" in capsys.readouterr().err


def test_a_stop_does_not_wait_for_an_idle_tls_client(pki: Pki) -> None:
    """Regression: uvicorn's graceful stop closed an idle TLS connection with close_notify
    and waited (asyncio's 30 s) for the client's, which an idle pooled client never sends:
    every SIGTERM of a node with such a client took 30 s, and the demo's site SIGKILLed its
    nodes. The server thread must now end while the client still holds its connection."""
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    server = PlatformServer(app, settings=Settings(), tls=pki.server_tls(mutual=False))
    server.start()
    with httpx.Client(verify=pki.anonymous.ssl_context(), timeout=10) as idle:
        assert idle.get(f"{server.url}/ping").status_code == 200  # stays in the pool
        thread = server._thread
        server.stop()  # joins the server thread for at most 20 s
        assert thread is not None and not thread.is_alive(), (
            "the server's stop is still waiting for the idle client's close_notify")
