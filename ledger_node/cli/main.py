"""The ``jointledger`` command line: one sub-command per job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ledger_node import __version__
from ledger_node.errors import LedgerError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jointledger",
        description="Permissioned joint ledger of unlinkable, regulator-traceable payments.",
    )
    parser.add_argument("--version", action="version", version=f"jointledger {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="the whole story: a consortium of real nodes, a payment day, the regulator's "
        "alerts, a case file and an unlinkability audit",
        description="Start the chain, both platforms' nodes and the regulator's node on "
        "127.0.0.1; submit a generated payment day with planted AML cases; trace, alert, "
        "disclose, build and verify a case file; audit the public data. Progress on stderr, "
        "the report on stdout and in --out (docs/demo.md). Exit status 0 when every planted "
        "case is found and every check passes, 1 when not, 2 for bad options or a bad "
        "scenario file.",
    )
    demo.add_argument("--payments", type=int,
                      help="payments in the day (default: the scenario's, 20000)")
    demo.add_argument("--seed", type=int, help="scenario seed (default: the scenario's, 0)")
    demo.add_argument("--scenario", type=Path, metavar="FILE",
                      help="scenario file, YAML or JSON (docs/scenario.md)")
    demo.add_argument("--rpc-url", help="run on this JSON-RPC development chain (e.g. anvil) "
                      "instead of starting the embedded one")
    demo.add_argument("--out", type=Path, default=Path("out/demo"),
                      help="output directory, replaced on each run (default out/demo)")

    keys = commands.add_parser("keys", help="manage a member's key files")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    new_keys = key_commands.add_parser(
        "new",
        help="create NAME.sm2.pem, NAME.sm2.pub.pem and NAME.account.key",
        description="Create a member's SM2 key pair (PEM, OpenSSL reads it) and chain account "
        "key. Private key files are written with mode 0600; existing keys are never "
        "overwritten.",
    )
    new_keys.add_argument("--name", required=True, help="member name, e.g. unionpay")
    new_keys.add_argument("--dir", type=Path, default=Path("keys"),
                          help="directory for the key files (default keys/)")

    chain = commands.add_parser(
        "chain",
        help="serve the embedded chain as JSON-RPC (and deploy for a consortium)",
        description="Serve the embedded eth-tester chain (fresh, or the one stored with "
        "--data) as standard Ethereum JSON-RPC on 127.0.0.1, so every member's node, the "
        "regulator, auditors and Ethereum tools reach one chain with --rpc-url. With "
        "--consortium, deploy JointLedger for its members and write the deployment file nodes "
        "load.",
    )
    chain.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    chain.add_argument("--port", type=int, default=8545, help="TCP port (default 8545)")
    chain.add_argument("--consortium", type=Path, help="consortium file (TOML) to deploy for")
    chain.add_argument("--deployment", type=Path, default=Path("deployment.json"),
                       help="where to write the deployment file (default deployment.json)")
    chain.add_argument("--data", type=Path,
                       help="store the chain in this file; a restart continues it (default: "
                       "in memory, gone when the process ends)")

    serve = commands.add_parser(
        "serve",
        help="run a member's node with its HTTP API on 127.0.0.1",
        description="Run a platform node (durable store, Merkle log, sealer anchoring signed "
        "checkpoints) or a regulator node (follows every platform's checkpoints, verifies "
        "and decrypts their leaves, traces, raises AML alerts) with its HTTP API. The config "
        "formats are in docs/api.md and docs/regulator.md.",
    )
    serve.add_argument("--role", required=True, choices=["platform", "regulator"],
                       help="the member's role")
    serve.add_argument("--name", required=True, help="member name; must match the config")
    serve.add_argument("--config", type=Path, required=True, help="node config file (TOML)")
    serve.add_argument("--rpc-url", help="JSON-RPC URL of the chain (overrides the config)")

    submit = commands.add_parser(
        "submit",
        help="commit payment records locally and submit them to the platform's node",
        description="Read RECORDS (JSONL, or CSV with a header of record field names), "
        "validate all of them, commit them locally (salts stay here), seal each record's AML "
        "escrow for the regulator whose SM2 key is registered on the chain the config names "
        "(read again for every chunk, so a key rotation takes effect at the next one) and "
        "submit signed batches to the node. Optional payer_kind / payee_kind fields or "
        "columns (person, institution) give the party kinds; otherwise they are read from "
        "the identity numbers. Receipts and openings go to a private JSONL file.",
    )
    submit.add_argument("records", type=Path, help="records file (.jsonl or .csv)")
    submit.add_argument("--config", type=Path, required=True,
                        help="the platform's node config (keys, platform name, address)")
    submit.add_argument("--url", help="node URL (default: from the config's [http] section)")
    submit.add_argument("--out", type=Path,
                        help="receipts file (default RECORDS.receipts.jsonl, mode 0600)")
    submit.add_argument("--chunk", type=int, default=10_000,
                        help="leaves per signed batch, 1..10000 (default 10000)")
    submit.add_argument("--format", choices=["jsonl", "csv"], help="override the file suffix")
    submit.add_argument("--rpc-url", help="JSON-RPC URL of the chain (overrides the config)")
    submit.add_argument("--regulator", metavar="NAME",
                        help="seal for this regulator when several are registered")
    submit.add_argument("--no-escrow", action="store_true",
                        help="submit without escrows: the regulator cannot trace the records")

    proof = commands.add_parser("proof", help="fetch a leaf's proof bundle from a node")
    proof.add_argument("index", type=int, help="leaf index")
    proof.add_argument("--url", required=True, help="node URL, e.g. http://127.0.0.1:8700")
    proof.add_argument("--out", type=Path, help="write the bundle here instead of stdout")
    proof.add_argument("--wait", type=float, default=5.0,
                       help="seconds to wait while the leaf is not yet anchored (default 5)")

    checkpoints = commands.add_parser("checkpoints", help="list a node's anchored checkpoints")
    checkpoints.add_argument("--url", required=True, help="node URL")
    checkpoints.add_argument("--after", type=int, default=0, help="only sizes above this")
    checkpoints.add_argument("--limit", type=int, default=1000, help="at most this many")

    verify = commands.add_parser(
        "verify",
        help="verify a proof bundle or a regulator's case file against the chain, with no "
        "node running",
        description="Verify a proof bundle against the chain at --rpc-url (the root, the "
        "platform's SM2 key and the anchoring transaction are read from the chain), or, with "
        "only --checkpoint-key, up to the signed checkpoint (the anchoring is then NOT "
        "checked). A case file (format jointledger/case-file/v1) is checked against the chain "
        "at --rpc-url: every record's bundle, every alert re-derived, every disclosure's "
        "on-chain request and answer; with --regulator-key escrows and sealed responses are "
        "decrypted and compared too (docs/casefile.md). Exit status 0 when valid, 1 when "
        "not, 2 for unusable input.",
    )
    verify.add_argument("bundle", type=Path, metavar="FILE",
                        help="proof bundle or case file (JSON)")
    verify.add_argument("--rpc-url", help="JSON-RPC URL of the consortium chain")
    verify.add_argument("--checkpoint-key", type=Path,
                        help="the platform's SM2 public key (PEM), for key-only checks")
    verify.add_argument("--deployment", type=Path,
                        help="deployment file of the consortium's contract: pins the contract")
    verify.add_argument("--opening", type=Path, help="whole-record opening JSON to check too")
    verify.add_argument("--disclosure", type=Path, help="single-field disclosure JSON to check")
    verify.add_argument("--regulator-key", type=Path, action="append", default=[],
                        metavar="PEM", help="case files: the regulator's SM2 private key "
                        "(PEM) to decrypt escrows and sealed responses; repeat for retired "
                        "keys")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")

    reconcile = commands.add_parser(
        "reconcile",
        help="reconcile the platform's cross-platform payments with another platform (对账)",
        description="Match the platform's own records (the receipts jointledger submit wrote) "
        "in a window of payment times against the counterparty platform's logs, across the "
        "log shards of both (every counterparty log on chain must have a node given): the "
        "logs are read from the nodes' public summaries and verified against the chain, the "
        "pairwise keys in force are derived from the registered SM2 keys. Reports matched, "
        "missing on the other side and amount mismatches, each with both leaves and proof "
        "bundles; a half still missing within the grace period is pending, not missing "
        "(docs/reconciliation.md). Exit status 0 when nothing is missing or mismatched, 1 "
        "when something is, 2 for unusable input (also a log with no node given), 3 when a "
        "node serves a log that does not match the chain, or a node or the chain cannot be "
        "reached.",
    )
    reconcile.add_argument("--config", type=Path, required=True,
                           help="the platform's node config (keys, platform name, chain)")
    reconcile.add_argument("--counterparty", required=True, metavar="NAME",
                           help="the other platform's member name on chain")
    reconcile.add_argument("--counterparty-url", required=True, nargs="+", metavar="URL",
                           help="the other platform's nodes, one per log shard, any order "
                           "(public reads only; each node's log is read from its /v1/health)")
    reconcile.add_argument("--window", nargs=2, required=True, metavar=("START", "END"),
                           help="payment times [START, END), RFC 3339 with a zone")
    reconcile.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                           help="a half missing for less than this after its payment time "
                           "is pending, not missing (default 3600)")
    reconcile.add_argument("--records", type=Path, nargs="+", required=True,
                           metavar="RECEIPTS", help="receipts files of jointledger submit")
    reconcile.add_argument("--retired-key", type=Path, action="append", default=[],
                           metavar="PEM", help="an SM2 private key of this platform that "
                           "governance rotated out (needed for windows before the rotation); "
                           "repeat for several")
    reconcile.add_argument("--url", nargs="+", metavar="URL",
                           help="own nodes, one per log shard the receipts name, any order "
                           "(default: the config's [http])")
    reconcile.add_argument("--rpc-url", help="JSON-RPC URL of the chain (overrides the config)")
    reconcile.add_argument("--as-of", metavar="TIME",
                           help="decide pending or missing as of this time (default now)")
    reconcile.add_argument("--out", type=Path,
                           help="report file (default reconciliation-PLATFORM-NAME-START.json, "
                           "mode 0600)")
    reconcile.add_argument("--findings-only-bundles", action="store_true",
                           help="leave the proof bundles of matched payments out of the report")

    console_login = commands.add_parser(
        "console-login",
        help="print the URL that opens a regulator session in the regulator node's web console",
        description="Sign a console login request with the regulator's key files (the "
        "regulator's serve config, or --sm2-key and --account-key, or --keys DIR with --name) "
        "and print the console URL carrying the one-time login token the node answers (valid "
        "once, for 60 s). Without a login the console shows the auditor view "
        "(docs/console.md). Exit status 0 printed, 1 refused or unreachable, 2 bad options.",
    )
    console_login.add_argument("--config", type=Path,
                               help="the regulator's node config (TOML, as for serve --role "
                               "regulator): node URL, name and key files")
    console_login.add_argument("--url", help="the regulator node's URL (overrides the config)")
    console_login.add_argument("--name", help="the regulator's member name (default: the "
                               "config's, else the node's /v1/health)")
    console_login.add_argument("--sm2-key", type=Path, metavar="PEM",
                               help="the regulator's SM2 private key")
    console_login.add_argument("--account-key", type=Path, metavar="FILE",
                               help="the regulator's chain account key")
    console_login.add_argument("--keys", type=Path, metavar="DIR",
                               help="directory of NAME.sm2.pem and NAME.account.key "
                               "(jointledger keys new)")

    fsck = commands.add_parser(
        "fsck",
        help="check a node's store row by row; repair a platform store from the regulator's "
        "verified copy",
        description="Re-verify every row of a stopped node's store: a platform store's leaf "
        "hashes recomputed from each leaf's commitment, escrow and tags, the Merkle tree "
        "rebuilt and compared with every stored checkpoint (and its SM2 signature), every "
        "stored level chunk and, with a chain, every root the chain anchored for the log and "
        "whether the chain is ahead of the store. --repair-from REGULATOR_URL re-fetches "
        "damaged rows and the lost tail from the regulator's verified copy, checks them "
        "against every anchored root and writes them in one transaction (needs --config: "
        "the platform signs the request). --rebuild-levels drops the stored Merkle levels "
        "(the next start rebuilds them). --role regulator checks a regulator store. Exit "
        "status 0 clean (or repaired), 1 damaged or missing, 2 unusable input "
        "(docs/node.md § Integrity).",
    )
    fsck.add_argument("store", type=Path, nargs="?",
                      help="the store file (default: the one --config names)")
    fsck.add_argument("--role", choices=["platform", "regulator"], default="platform",
                      help="whose store it is (default platform)")
    fsck.add_argument("--config", type=Path,
                      help="the node's serve config (TOML): store, keys, deployment, chain")
    fsck.add_argument("--name", help="--role regulator: the regulator the store was made for "
                      "(default: the config's)")
    fsck.add_argument("--rpc-url", help="JSON-RPC URL of the chain (overrides the config)")
    fsck.add_argument("--deployment", type=Path,
                      help="deployment file (default: the config's); with --rpc-url, compares "
                      "the chain's anchored roots")
    fsck.add_argument("--repair-from", metavar="REGULATOR_URL",
                      help="platform: restore damaged rows and the lost tail from this "
                      "regulator node's verified copy")
    fsck.add_argument("--rebuild-levels", action="store_true",
                      help="platform: drop the stored Merkle levels (rebuilt at the next start)")

    risk = commands.add_parser(
        "risk",
        help="the shared risk-device list: check, add, remove devices; distribute list keys",
        description="Check, add or remove devices on the consortium's shared risk-device "
        "list as the member whose node config is given (its own keys and chain account; the "
        "list is synced from the chain for each run), or, as a regulator, open the next "
        "list-key epoch (distribute) or deliver the current one to members without it. "
        "Fingerprints are KIND:VALUE (imei, meid, android_id, idfv, oaid, device_id). Exit "
        "status: 0 done (check: nothing listed), 3 check found a listed device, 2 bad "
        "input, 1 other failures (docs/risklist.md).",
    )
    risk.add_argument("action", choices=["check", "add", "remove", "propose-removal", "status",
                                         "distribute", "deliver"])
    risk.add_argument("fingerprints", nargs="*", metavar="FINGERPRINT")
    risk.add_argument("--config", type=Path, required=True,
                      help="the member's node config (TOML): keys, deployment, chain")
    risk.add_argument("--role", choices=["platform", "regulator"], default="platform",
                      help="which kind of config --config is (default platform)")
    risk.add_argument("--from", dest="source", type=Path, metavar="FILE",
                      help="more fingerprints, one per line ('-' for standard input)")
    risk.add_argument("--reason", help="add: reason code or name (fraud, account_takeover, "
                      "money_mule, gambling, device_farm, stolen_device)")
    risk.add_argument("--account", action="append", default=[], metavar="ADDRESS",
                      help="deliver: to this member only (repeatable)")
    risk.add_argument("--rpc-url", help="JSON-RPC URL of the chain (overrides the config)")
    risk.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _keys_new(name: str, directory: Path) -> int:
    from ledger_node.crypto.keyfiles import key_paths, new_member_keys

    try:
        keys = new_member_keys(directory, name)
    except FileExistsError as exc:
        print(f"jointledger keys new: {exc}", file=sys.stderr)
        return 1
    private, public, account = key_paths(directory, name)
    print(f"member {name}: chain address {keys.address}")
    print(f"  SM2 private key  {private} (mode 0600)")
    print(f"  SM2 public key   {public}")
    print(f"  account key      {account} (mode 0600)")
    print(f"  SM2 public key (raw x||y, as registered on chain): "
          f"{keys.sm2_key.public_key().raw.hex()}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
    from ledger_node.cli.client import (
        RecordFileError,
        chain_counterparties,
        chain_regulator_key,
        run_submit,
    )
    from ledger_node.platform.config import load_serve_config

    if not 1 <= args.chunk <= 10_000:
        print("jointledger submit: --chunk must be in 1..10000", file=sys.stderr)
        return 2
    if args.no_escrow and args.regulator:
        print("jointledger submit: --regulator and --no-escrow exclude each other",
              file=sys.stderr)
        return 2
    config = load_serve_config(args.config)
    rpc_url = args.rpc_url or config.rpc_url or DEFAULT_CHAIN_URL
    try:
        return run_submit(
            args.records,
            url=args.url or f"http://{config.host}:{config.port}",
            platform=config.node.platform,
            sm2_key=config.sm2_key,
            account_key=config.account_key,
            regulator_key=None if args.no_escrow else chain_regulator_key(
                config.deployment, rpc_url, args.regulator),
            counterparties=chain_counterparties(config.deployment, rpc_url),
            out=args.out,
            chunk=args.chunk,
            file_format=args.format,
        )
    except RecordFileError as exc:
        print(f"jointledger submit: {exc} (nothing was submitted)", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    import time

    started = time.perf_counter()  # the demo's clock includes importing it (~2 s)
    from ledger_node.demo.run import prepare_demo, run_demo
    from ledger_node.errors import InvalidConfig, InvalidScenario

    try:
        plan = prepare_demo(args.out, scenario_file=args.scenario, payments=args.payments,
                            seed=args.seed, rpc_url=args.rpc_url, started=started)
    except (InvalidScenario, InvalidConfig) as exc:
        print(f"jointledger demo: {exc}", file=sys.stderr)
        return 2
    return run_demo(plan)


def _verify(args: argparse.Namespace) -> int:
    from ledger_node.cli.verify import run_verify

    if not args.rpc_url and not args.checkpoint_key:
        print("jointledger verify: give --rpc-url (full check) or --checkpoint-key "
              "(key-only check)", file=sys.stderr)
        return 2
    try:
        return run_verify(args.bundle, rpc_url=args.rpc_url, checkpoint_key=args.checkpoint_key,
                          deployment=args.deployment, opening=args.opening,
                          disclosure=args.disclosure, regulator_keys=args.regulator_key,
                          as_json=args.json)
    except ValueError as exc:  # unreadable files and malformed documents (LedgerError too)
        print(f"jointledger verify: {exc}", file=sys.stderr)
        return 2


def _reconcile(args: argparse.Namespace) -> int:
    from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
    from ledger_node.cli.reconcile import EXIT_REFUSED, EXIT_UNUSABLE, run_reconcile
    from ledger_node.errors import (
        ChainError,
        InvalidKey,
        InvalidReconciliationInput,
        InvalidWindow,
        LogVerificationFailed,
        PairwiseKeyUnavailable,
        UnknownCounterparty,
    )
    from ledger_node.platform.config import load_serve_config
    from ledger_node.protocol.reconciliation import Window, check_grace, parse_time

    try:
        window = Window(parse_time(args.window[0], "window start"),
                        parse_time(args.window[1], "window end"))
        grace = check_grace(args.grace)
        as_of = parse_time(args.as_of, "--as-of") if args.as_of else None
        config = load_serve_config(args.config)
        return run_reconcile(
            platform=config.node.platform, sm2_key=config.sm2_key,
            account_key=config.account_key, deployment=config.deployment,
            rpc_url=args.rpc_url or config.rpc_url or DEFAULT_CHAIN_URL,
            urls=args.url or [f"http://{config.host}:{config.port}"],
            counterparty=args.counterparty, counterparty_urls=args.counterparty_url,
            window=window, grace=grace, receipts=args.records, retired_keys=args.retired_key,
            shard=config.node.shard, as_of=as_of,
            out=args.out, matched_bundles=not args.findings_only_bundles)
    except (InvalidWindow, InvalidReconciliationInput, InvalidKey, UnknownCounterparty,
            PairwiseKeyUnavailable, ValueError) as exc:
        print(f"jointledger reconcile: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except (LogVerificationFailed, ChainError) as exc:
        print(f"jointledger reconcile: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def _fsck(args: argparse.Namespace) -> int:
    from ledger_node.chain.adapter import Deployment, LedgerChain
    from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
    from ledger_node.cli.fsck import EXIT_UNUSABLE, run_platform_fsck, run_regulator_fsck
    from ledger_node.client.sdk import NodeClient, RegulatorCopyClient
    from ledger_node.errors import InvalidConfig

    def unusable(message: str) -> int:
        print(f"jointledger fsck: {message}", file=sys.stderr)
        return EXIT_UNUSABLE

    try:
        if args.role == "regulator":
            from ledger_node.regulator.config import load_regulator_config

            reg = load_regulator_config(args.config) if args.config else None
            store = args.store or (reg.regulator.store_path if reg else None)
            name = args.name or (reg.regulator.name if reg else None)
            if store is None or name is None:
                return unusable("give STORE and --name, or --config")
            if not store.is_file():
                return unusable(f"no store at {store}")
            deployment = args.deployment or (reg.deployment if reg else None)
            rpc_url = args.rpc_url or (reg.rpc_url or DEFAULT_CHAIN_URL if reg else None)
            chain = (LedgerChain.from_rpc(rpc_url).attach(Deployment.load(deployment))
                     if rpc_url and deployment else None)
            return run_regulator_fsck(store, name, chain=chain)
        from ledger_node.platform.config import load_keys, load_serve_config
        from ledger_node.regulator.node import node_audience

        config = load_serve_config(args.config) if args.config else None
        store = args.store or (config.node.store_path if config else None)
        if store is None:
            return unusable("give STORE or --config")
        if not store.is_file():
            return unusable(f"no store at {store}")
        deployment = args.deployment or (config.deployment if config else None)
        rpc_url = args.rpc_url or (config.rpc_url or DEFAULT_CHAIN_URL if config else None)
        if rpc_url and deployment is None:
            return unusable("--rpc-url needs --deployment (or --config) to find the contract")
        keys = load_keys(config) if config else None
        chain = (LedgerChain.from_rpc(rpc_url).attach(Deployment.load(deployment))
                 if rpc_url and deployment else None)
        regulator = None
        if args.repair_from:
            if keys is None:
                return unusable("--repair-from needs --config: the platform signs its "
                                "request to the regulator with its keys")
            with NodeClient(args.repair_from) as probe:
                name = str(probe.health()["name"])
            regulator = RegulatorCopyClient(args.repair_from, keys.address, keys.sm2_key,
                                            node_audience(name))
        return run_platform_fsck(store, chain=chain, keys=keys, regulator=regulator,
                                 rebuild_levels=args.rebuild_levels)
    except InvalidConfig as exc:
        return unusable(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "keys":
            return _keys_new(args.name, args.dir)
        if args.command == "verify":
            return _verify(args)
        if args.command == "chain":
            from ledger_node.cli.chain import run_chain

            return run_chain(args.host, args.port, consortium_path=args.consortium,
                             deployment_path=args.deployment, data=args.data)
        if args.command == "serve" and args.role == "regulator":
            from api.regulator_server import serve_regulator_file

            serve_regulator_file(args.config, name=args.name, rpc_url=args.rpc_url)
            return 0
        if args.command == "serve":
            from api.server import serve_platform_file

            serve_platform_file(args.config, name=args.name, rpc_url=args.rpc_url)
            return 0
        if args.command == "submit":
            return _submit(args)
        if args.command == "proof":
            from ledger_node.cli.client import run_proof

            return run_proof(args.url, args.index, out=args.out, wait=args.wait)
        if args.command == "checkpoints":
            from ledger_node.cli.client import run_checkpoints

            return run_checkpoints(args.url, after=args.after, limit=args.limit)
        if args.command == "reconcile":
            return _reconcile(args)
        if args.command == "console-login":
            from ledger_node.cli.console import run_console_login

            return run_console_login(config=args.config, url=args.url, name=args.name,
                                     sm2_key=args.sm2_key, account_key=args.account_key,
                                     keys_dir=args.keys)
        if args.command == "fsck":
            return _fsck(args)
        if args.command == "risk":
            from ledger_node.cli.risk import run_risk

            return run_risk(args.action, config=args.config, role=args.role,
                            rpc_url=args.rpc_url, fingerprints=args.fingerprints,
                            source=args.source, reason=args.reason, accounts=args.account,
                            as_json=args.json)
    except LedgerError as exc:
        print(f"jointledger {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse guarantees one


if __name__ == "__main__":
    sys.exit(main())
