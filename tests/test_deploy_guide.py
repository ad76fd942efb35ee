"""docs/deploy.md followed step by step on anvil (standing in for Besu: all through JSON-RPC).

The consortium file, the deploy command, the node configs and the helper scripts are read
out of the guide itself, so the guide and what is tested cannot drift apart.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3
from web3.types import RPCEndpoint

from ledger_node.chain.adapter import ANVIL_FAUCET_KEY, Deployment, LedgerChain, Role
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import MemberKeys, new_member_keys
from ledger_node.errors import InvalidConfig
from ledger_node.log.leaf import Leaf, batch_digest
from ledger_node.platform.config import build_node, load_serve_config
from ledger_node.platform.node import PlatformNode
from ledger_node.platform.store import SQLiteStore
from ledger_node.protocol.auth import BatchEvidence
from ledger_node.regulator.config import build_regulator, load_regulator_config
from ledger_node.tls import ClientTls, ServerTls
from tests.api_support import wait_for

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "deploy.md"
DEPLOY_SCRIPT = REPO / "scripts" / "deploy.py"
MEMBERS = ("unionpay", "wechatpay", "pboc", "netsunion")
ROLES = {"platform": Role.PLATFORM, "regulator": Role.REGULATOR, "auditor": Role.AUDITOR}
ALLOC_WEI = 0xD3C21BCECCEDA1000000  # the genesis alloc of every member account (1e6 ether)
# Section 2's table: what each member's TLS certificate names (section 3).
HOSTS = {"unionpay": ("ledger.unionpay.example", "192.0.2.11"),
         "wechatpay": ("ledger.wechatpay.example", "192.0.2.12"),
         "pboc": ("ledger.pboc.example", "192.0.2.13"),
         "netsunion": ("ledger.netsunion.example", "192.0.2.14")}

# Besu's documented QBFT example (besu-docs, "Configure QBFT consensus", Generate extra data).
BESU_VALIDATORS = ["0x4592c8e45706cc08b8f44b11e43cba0cfc5892cb",
                   "0x06e23768a0f59cf365e18c2e0c89e151bcdedc70",
                   "0xc5327f96ee02d7bcbc1bf1236b8c15148971e1de",
                   "0xab5e7f4061c605820d3744227eed91ff8e2c8908"]
BESU_EXTRA_DATA = (
    "0xf87aa00000000000000000000000000000000000000000000000000000000000000000f854944592c8e4"
    "5706cc08b8f44b11e43cba0cfc5892cb9406e23768a0f59cf365e18c2e0c89e151bcdedc7094c5327f96ee"
    "02d7bcbc1bf1236b8c15148971e1de94ab5e7f4061c605820d3744227eed91ff8e2c8908c080c0"
)

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def guide_blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` in the guide."""
    return [body for lang, body in _FENCE.findall(GUIDE.read_text(encoding="utf-8"))
            if lang == language]


def guide_file(name: str) -> str:
    """The guide's block whose first line is ``# file: NAME``."""
    found = [body for lang in ("toml", "python", "json") for body in guide_blocks(lang)
             if body.startswith("# file: ") and body.split()[2] == name]
    assert len(found) == 1, f"docs/deploy.md must hold exactly one '# file: {name}' block"
    return found[0]


def guide_deploy_args() -> list[str]:
    """The arguments of the guide's ``scripts/deploy.py`` command."""
    for body in guide_blocks("sh"):
        command = body.replace("\\\n", " ")
        for line in command.splitlines():
            if "scripts/deploy.py" in line:
                words = shlex.split(line, comments=True)
                return words[words.index("scripts/deploy.py") + 1:]
    raise AssertionError("docs/deploy.md has no scripts/deploy.py command")


def guide_roles() -> dict[str, str]:
    """Member name → contract role, from the guide's first table."""
    head = GUIDE.read_text(encoding="utf-8").split("## Contents")[0]
    return dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| `(\w+)` \|", head, re.M))


@dataclass(frozen=True)
class Site:
    """Four member hosts (directories) after the guide's sections 3, 7 and 8."""

    hosts: dict[str, Path]
    keys: dict[str, MemberKeys]
    deployment: Deployment
    rpc_url: str


@pytest.fixture(scope="module")
def site(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("deploy-guide")
    hosts = {name: root / name for name in MEMBERS}
    # Section 3: every member makes its keys on its own host, and sends public files only.
    keys = {name: new_member_keys(host / "keys", name) for name, host in hosts.items()}
    coordinator = hosts["pboc"]
    public = coordinator / "consortium" / "keys"
    public.mkdir(parents=True)
    for name, host in hosts.items():
        for suffix in (".sm2.pub.pem", ".address"):
            shutil.copy(host / "keys" / f"{name}{suffix}", public)
    assert not list(public.glob("*.sm2.pem")) and not list(public.glob("*.account.key"))
    (coordinator / "consortium" / "consortium.toml").write_text(guide_file("consortium.toml"))
    # Section 4's genesis alloc, on anvil: every member account funded.
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    for member in keys.values():
        w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [member.address, hex(ALLOC_WEI)])
    # Section 7: deploy from the coordinator's host, as the guide's command says.
    deployer = coordinator / "deployer-keys" / "deployer.account.key"
    deployer.parent.mkdir()
    deployer.write_text(ANVIL_FAUCET_KEY + "\n")
    args = guide_deploy_args()
    args[args.index("--rpc-url") + 1] = anvil_url
    main = runpy.run_path(str(DEPLOY_SCRIPT))["main"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(coordinator)
        assert main(args) == 0
    out = coordinator / args[args.index("--out") + 1]
    for host in hosts.values():
        if host != coordinator:
            shutil.copy(out, host / "deployment.json")
        (host / "data").mkdir()
    issue_certificates(root, hosts)
    return Site(hosts, keys, Deployment.load(out), anvil_url)


def issue_certificates(root: Path, hosts: dict[str, Path]) -> None:
    """Section 3's TLS certificates with the guide's issue_certs.py: the CA on its own
    machine, each member's key and CSR on its host, the CA signing each CSR, the certificate
    and ca.pem sent back into the host's tls/."""
    script = root / "issue_certs.py"
    script.write_text(guide_file("issue_certs.py"))
    ca_dir = root / "consortium-ca"

    def run(*args: str, cwd: Path) -> None:
        subprocess.run([sys.executable, str(script), *args], cwd=cwd, check=True,
                       capture_output=True)

    run("ca", str(ca_dir), cwd=root)
    for name, host in hosts.items():
        run("csr", name, *HOSTS[name], cwd=host)
        assert (host / "tls" / f"{name}.key").stat().st_mode & 0o077 == 0
        csr = ca_dir / f"{name}.csr"
        shutil.move(host / f"{name}.csr", csr)  # only the CSR travels to the CA
        run("sign", str(ca_dir), str(csr), cwd=ca_dir)
        shutil.copy(csr.with_suffix(".pem"), host / "tls" / f"{name}.pem")
        shutil.copy(ca_dir / "ca.pem", host / "tls" / "ca.pem")
    assert not list(root.glob("*/tls/ca.key"))


@pytest.mark.anvil
def test_members_on_chain_are_the_guides(site: Site) -> None:
    chain = LedgerChain.from_rpc(site.rpc_url).attach(site.deployment)
    consortium = tomllib.loads(guide_file("consortium.toml"))
    assert chain.threshold() == consortium["threshold"] == 2
    roles = guide_roles()
    assert sorted(roles) == sorted(MEMBERS)
    assert {m["name"]: m["role"] for m in consortium["members"]} == roles
    on_chain = {m.name: m for m in chain.members()}
    assert sorted(on_chain) == sorted(MEMBERS)
    for name, member in on_chain.items():
        assert member.role is ROLES[roles[name]] and member.active
        assert member.address == site.keys[name].address
        assert member.public_key == site.keys[name].sm2_key.public_key().raw
    # The guide's figure: one auditor, three voters, 2 of 3.
    assert [m.name for m in on_chain.values() if m.role is Role.AUDITOR] == ["netsunion"]


@pytest.mark.anvil
def test_deploy_refuses_to_overwrite_the_deployment_file(site: Site) -> None:
    args = guide_deploy_args()
    args[args.index("--rpc-url") + 1] = site.rpc_url
    main = runpy.run_path(str(DEPLOY_SCRIPT))["main"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(site.hosts["pboc"])
        assert main(args) == 1


@pytest.fixture
def unionpay_node(site: Site) -> Iterator[PlatformNode]:
    host = site.hosts["unionpay"]
    path = host / "unionpay.toml"
    path.write_text(guide_file("unionpay.toml"))
    node = build_node(load_serve_config(path), rpc_url=site.rpc_url)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.anvil
@pytest.mark.parametrize("platform", ["unionpay", "wechatpay"])
def test_platform_configs_load_and_start(site: Site, platform: str) -> None:
    host = site.hosts[platform]
    path = host / f"{platform}.toml"
    path.write_text(guide_file(f"{platform}.toml"))
    config = load_serve_config(path)
    assert config.node.platform == platform
    assert config.node.store_path == host.resolve() / "data" / f"{platform}.db"
    assert config.sm2_key == host.resolve() / "keys" / f"{platform}.sm2.pem"
    assert config.account_key == host.resolve() / "keys" / f"{platform}.account.key"
    assert config.deployment == host.resolve() / "deployment.json"
    assert (config.host, config.port, config.rpc_url) == (
        HOSTS[platform][1], 8443, "http://127.0.0.1:8545")
    tls = host.resolve() / "tls"
    assert config.server_tls == ServerTls(tls / f"{platform}.pem", tls / f"{platform}.key",
                                          tls / "ca.pem")
    assert config.client_tls == ClientTls(tls / "ca.pem", tls / f"{platform}.pem",
                                          tls / f"{platform}.key")
    assert config.plaintext_warning is None
    assert config.url == f"https://{HOSTS[platform][1]}:8443"
    node = build_node(config, rpc_url=site.rpc_url)
    node.start()  # checks on chain: an active platform whose registered SM2 key is keys.sm2
    node.stop()


@pytest.mark.anvil
def test_regulator_config_loads_and_passes_its_checks(site: Site) -> None:
    host = site.hosts["pboc"]
    path = host / "pboc-regulator.toml"
    path.write_text(guide_file("pboc-regulator.toml"))
    config = load_regulator_config(path)
    assert config.regulator.name == "pboc"
    assert config.regulator.store_path == host.resolve() / "data" / "pboc-regulator.db"
    assert dict(config.platforms) == {"unionpay": "https://ledger.unionpay.example:8443",
                                      "wechatpay": "https://ledger.wechatpay.example:8443"}
    assert (config.host, config.port, config.rpc_url) == (
        "127.0.0.1", 8790, "http://127.0.0.1:8545")
    tls = host.resolve() / "tls"
    assert config.client_tls == ClientTls(tls / "ca.pem", tls / "pboc.pem", tls / "pboc.key")
    build_regulator(config, rpc_url=site.rpc_url).stop()


@pytest.mark.anvil
def test_the_auditor_cannot_run_the_regulator_node(site: Site) -> None:
    host = site.hosts["netsunion"]
    path = host / "regulator.toml"
    path.write_text(guide_file("pboc-regulator.toml").replace("pboc", "netsunion"))
    with pytest.raises(InvalidConfig, match="is not the active regulator 'netsunion'"):
        build_regulator(load_regulator_config(path), rpc_url=site.rpc_url)


@pytest.mark.anvil
def test_backup_of_a_running_store(site: Site, unionpay_node: PlatformNode,
                                   tmp_path: Path) -> None:
    node = unionpay_node
    keys = site.keys["unionpay"]
    leaves = [Leaf(bytes([i]) * 32) for i in range(1, 6)]
    digest = batch_digest(node.log_id, leaves)
    start = node.size()
    node.submit(leaves, BatchEvidence(keys.address, digest, gmcrypto.sign(keys.sm2_key, digest)))
    # The genesis alloc pays for anchoring: the leaves get anchored on the guide's settings.
    wait_for(lambda: node.metrics()["anchored_size"] >= start + 5 or None, timeout=20)
    script = tmp_path / "backup_store.py"
    script.write_text(guide_file("backup_store.py"))
    backup = tmp_path / "unionpay-backup.db"
    live = site.hosts["unionpay"] / "data" / "unionpay.db"
    subprocess.run([sys.executable, str(script), str(live), str(backup)], check=True)
    copy = SQLiteStore(backup, platform="unionpay", log_id=node.log_id, hash_name="sm3")
    try:
        assert copy.size() == start + 5
        assert copy.leaf(start + 4) == leaves[4]
        latest = copy.latest_checkpoint()
        assert latest is not None and latest.tree_size >= start + 5
    finally:
        copy.close()


def test_extradata_check_reproduces_besus_example(tmp_path: Path) -> None:
    script = tmp_path / "check_extradata.py"
    script.write_text(guide_file("check_extradata.py"))
    validators = tmp_path / "toEncode.json"
    validators.write_text(json.dumps(BESU_VALIDATORS))
    out = subprocess.run([sys.executable, str(script), str(validators)], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == BESU_EXTRA_DATA


def test_every_toml_and_json_block_parses() -> None:
    tomls = guide_blocks("toml")
    assert len(tomls) >= 6
    for body in tomls:
        tomllib.loads(body)
    (genesis,) = [json.loads(b) for b in guide_blocks("json") if '"config"' in b]
    artifact_file = REPO / "ledger_node" / "chain" / "artifacts" / "JointLedger.json"
    artifact = json.loads(artifact_file.read_text())
    # The contracts are compiled for Cancun: the genesis must run it from block 0.
    assert artifact["compiler"]["settings"]["evmVersion"] == "cancun"
    assert genesis["config"]["cancunTime"] == genesis["config"]["shanghaiTime"] == 0
    qbft = genesis["config"]["qbft"]
    assert qbft["requesttimeoutseconds"] == 2 * qbft["blockperiodseconds"]
    assert all(int(a["balance"], 16) == ALLOC_WEI for a in genesis["alloc"].values())
    assert len(genesis["alloc"]) == 1 + len(MEMBERS)
