"""The ``jointledger`` command line: one sub-command per job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ledger_node import __version__
from ledger_node.cli.advice import ConfigKind
from ledger_node.cli.chain import add_limit_options  # cheap: imports no chain
from ledger_node.cli.tlsopts import add_client_tls_options, client_tls
from ledger_node.errors import InvalidConfig, LedgerError

if TYPE_CHECKING:
    from ledger_node.tls import ServerTls


class _Version(argparse.Action):
    """``--version``: the release and the SM2 backend (imported only when asked, for start-up)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from ledger_node.crypto.gmcrypto import crypto_backends
        from ledger_node.errors import CryptoBackendUnavailable

        try:
            shown = ", ".join(f"{name}: {used}" for name, used in crypto_backends().items())
        except CryptoBackendUnavailable as exc:
            shown = f"sm2: unavailable: {exc}"
        sys.stdout.write(f"jointledger {__version__} ({shown})\n")
        parser.exit()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jointledger",
        description="Permissioned joint ledger of unlinkable, regulator-traceable payments.",
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version and the SM2 backend in use, and exit")
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
    demo.add_argument("--store", metavar="URL",
                      help="keep the regulator's store in this empty PostgreSQL database "
                      "(postgresql://...) instead of a SQLite file (docs/storage.md)")
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
        "--data) as standard Ethereum JSON-RPC on 127.0.0.1 (or --host, with --tls-cert and "
        "--tls-key for https), so every member's node, the "
        "regulator, auditors and Ethereum tools reach one chain with --rpc-url. With "
        "--consortium, deploy JointLedger for its members and write the deployment file nodes "
        "load.",
    )
    chain.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1); beyond loopback it needs "
                       "--tls-cert/--tls-key or --allow-plaintext")
    chain.add_argument("--port", type=int, default=8545, help="TCP port (default 8545)")
    chain.add_argument("--tls-cert", type=Path, metavar="PEM",
                       help="serve https with this certificate chain (with --tls-key)")
    chain.add_argument("--tls-key", type=Path, metavar="PEM",
                       help="the certificate's private key")
    chain.add_argument("--client-ca", type=Path, metavar="PEM",
                       help="mutual TLS: only clients whose certificate chains to this CA "
                       "bundle are served")
    chain.add_argument("--allow-plaintext", action="store_true",
                       help="serve plain HTTP on a non-loopback --host anyway (warned)")
    chain.add_argument("--consortium", type=Path, help="consortium file (TOML) to deploy for")
    chain.add_argument("--deployment", type=Path, default=Path("deployment.json"),
                       help="where to write the deployment file (default deployment.json)")
    chain.add_argument("--data", type=Path,
                       help="store the chain in this file; a restart continues it (default: "
                       "in memory, gone when the process ends)")
    add_limit_options(chain)

    serve = commands.add_parser(
        "serve",
        help="run a member's node with its HTTP API (https with the config's TLS)",
        description="Run a platform node (durable store, Merkle log, sealer anchoring signed "
        "checkpoints) or a regulator node (follows every platform's checkpoints, verifies "
        "and decrypts their leaves, traces, raises AML alerts) with its HTTP API. The config "
        "formats are in docs/api.md and docs/regulator.md: [http] names the address, the "
        "limits and the TLS certificate (beyond loopback TLS is required unless "
        "allow_plaintext = true), [tls] what the node's clients trust and present.",
    )
    serve.add_argument("--role", required=True, choices=["platform", "regulator"],
                       help="the member's role")
    serve.add_argument("--name", required=True, help="member name; must match the config")
    serve.add_argument("--config", type=Path, required=True, help="node config file (TOML)")
    serve.add_argument("--rpc-url", help="JSON-RPC URL of the chain (overrides the config)")
    serve.add_argument("--port", type=int,
                       help="TCP port (overrides the config's [http] port: several regulator "
                       "API replicas on one machine)")
    serve.add_argument("--ingest", choices=["on", "off"], default="on",
                       help="regulator: off runs an API replica that serves trace, alerts and "
                       "the console from the store another process fills, following nothing "
                       "(default on)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="regulator: ingest with N worker processes, each following a "
                       "disjoint set of logs, this process following the chain and "
                       "restarting a dead worker (N > 1 needs a PostgreSQL store; default 1: "
                       "this process ingests)")
    serve.add_argument("--ingest-worker", metavar="K/N", help=argparse.SUPPRESS)

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
    add_client_tls_options(submit)

    proof = commands.add_parser("proof", help="fetch a leaf's proof bundle from a node")
    proof.add_argument("index", type=int, help="leaf index")
    proof.add_argument("--url", required=True, help="node URL, e.g. http://127.0.0.1:8700")
    proof.add_argument("--out", type=Path, help="write the bundle here instead of stdout")
    proof.add_argument("--wait", type=float, default=5.0,
                       help="seconds to wait while the leaf is not yet anchored (default 5)")
    add_client_tls_options(proof)

    checkpoints = commands.add_parser("checkpoints", help="list a node's anchored checkpoints")
    checkpoints.add_argument("--url", required=True, help="node URL")
    checkpoints.add_argument("--after", type=int, default=0, help="only sizes above this")
    checkpoints.add_argument("--limit", type=int, default=1000, help="at most this many")
    add_client_tls_options(checkpoints)

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
    add_client_tls_options(verify)

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
    add_client_tls_options(reconcile)

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
    add_client_tls_options(console_login)

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
    add_client_tls_options(fsck)

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
    add_client_tls_options(risk)
    _add_regulator_commands(commands)
    _add_governance_commands(commands)
    _add_site_commands(commands)
    return parser


_REGULATOR_STATUS = ("Exit status 0 done, 1 the node is unreachable or refuses (wrong "
                     "role or key, unknown id), 2 unusable config, key files or options.")


def _regulator_options(command: argparse.ArgumentParser, *, url: bool = True,
                       config_required: bool = True) -> None:
    """The options every regulator command takes: its config, the node's URL, --json."""
    command.add_argument("--config", type=Path, required=config_required,
                         help="the regulator's node config (TOML, as for serve --role "
                         "regulator): the node's URL from [http], the keys from [keys]")
    if url:
        command.add_argument("--url", help="the regulator node's URL (default "
                             "http://{[http] host}:{port} of the config)")
    command.add_argument("--json", action="store_true",
                         help="print the node's JSON answer (for scripts) instead of a table")


def _add_regulator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]
                            ) -> None:
    """``trace``, ``alerts``, ``faults``, ``disclose`` and ``casefile``: the regulator's
    command line on its own node (docs/regulator.md, "The regulator's command line")."""
    trace = commands.add_parser(
        "trace", help="every record of an identity, or the identities behind a commitment",
        description="Ask the regulator's node for every record where an identity pays or is "
        "paid, on every platform (or the record behind a commitment), each with its proof "
        "bundle (--json). The identity is personal data: --identity reads it from a prompt "
        "(or the first line of standard input), --identity-file from a file; it is never "
        "taken from the command line unless --identity-arg asks for that. "
        + _REGULATOR_STATUS)
    _regulator_options(trace)
    whom = trace.add_mutually_exclusive_group(required=True)
    whom.add_argument("--identity", action="store_true",
                      help="read the identity from a prompt, or standard input")
    whom.add_argument("--identity-file", type=Path, metavar="FILE",
                      help="read the identity from the first line of FILE ('-': stdin)")
    whom.add_argument("--identity-arg", metavar="IDENTITY",
                      help="the identity itself (visible to other users in ps: a warning "
                      "is printed)")
    whom.add_argument("--identity-key", metavar="HEX",
                      help="the identity key (SM3 of the normalised identity, 64 hex)")
    whom.add_argument("--commitment", metavar="HEX", help="a record's commitment (64 hex)")

    alerts = commands.add_parser(
        "alerts", help="the AML alerts, or one with its evidence (--id N)",
        description="List the regulator node's AML alerts with their lasting ids (from 1), "
        "or show one alert with the records it rests on. " + _REGULATOR_STATUS)
    _regulator_options(alerts)
    alerts.add_argument("--id", type=int, dest="alert_id", metavar="N",
                        help="show alert N with its evidence")
    alerts.add_argument("--rule", help="only alerts of this rule (or under it: structuring)")

    faults = commands.add_parser(
        "faults", help="data the regulator's node refused from platform nodes",
        description="List the faults the regulator's node recorded: altered, withheld or "
        "unreadable platform data (docs/regulator.md). " + _REGULATOR_STATUS)
    _regulator_options(faults)

    disclose = commands.add_parser(
        "disclose", help="the regulator's disclosures (request, status, collect), or a "
        "platform's single-field disclosure (RECEIPTS --field NAME)",
        usage="jointledger disclose {request,status,collect} --config REGULATOR_TOML [...]\n"
        "       jointledger disclose RECEIPTS --field NAME [--tx ID | --commitment HEX] "
        "[--out FILE]",
        description="Two jobs, told apart by --field. Without it, the regulator's disclosure "
        "workflow on its node: request (logged on chain) that the platform holding a "
        "commitment open it for a case; status of the requests made; collect the platform's "
        "answer, checked by the node against the chain (these need --config, the regulator's "
        "node config). With --field, a platform writes the disclosure of one field of one "
        "record from the receipts file jointledger submit wrote, which jointledger verify "
        "BUNDLE --disclosure FILE accepts (no node, no config; the same as disclose-field). "
        "Exit status 3 from collect while the platform has not answered; else as the other "
        "regulator commands: " + _REGULATOR_STATUS)
    disclose.add_argument("action", metavar="ACTION|RECEIPTS",
                          help="request, status or collect (the regulator's); with --field, "
                          "the receipts file (JSONL) or one receipt (JSON)")
    _regulator_options(disclose, config_required=False)
    disclose.add_argument("--commitment", metavar="HEX", help="request: the commitment; "
                          "with --field: the record's commitment")
    disclose.add_argument("--case-id", metavar="HEX", help="request: the case (64 hex)")
    disclose.add_argument("--id", type=int, dest="request_id", metavar="N",
                          help="collect (required), status: the request id")
    disclose.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                          help="collect: wait this long for the platform's answer")
    disclose.add_argument("--out", type=Path, metavar="FILE",
                          help="collect: write the verified opening here (mode 0600); with "
                          "--field: write the disclosure here (default: standard output)")
    disclose.add_argument("--field", help="disclose one field of a submitted record, e.g. "
                          "amount (= amount_fen): ACTION|RECEIPTS is then the receipts file")
    disclose.add_argument("--tx", dest="local_tx_id", metavar="LOCAL_TX_ID",
                          help="with --field: the record's local transaction id")

    casefile = commands.add_parser(
        "casefile", help="build a case file from the regulator's node, or verify one",
        description="build: ask the regulator's node for a self-contained case file on "
        "identities (keys, a file of identities hashed here, or alerts' identities) and "
        "records, with the case's collected disclosures, and write it (mode 0600). verify: "
        "check a case file against the chain of the config, as jointledger verify does "
        "(docs/casefile.md). " + _REGULATOR_STATUS)
    casefile.add_argument("action", choices=["build", "verify"])
    casefile.add_argument("file", type=Path, nargs="?", metavar="CASEFILE",
                          help="verify: the case file")
    _regulator_options(casefile)
    casefile.add_argument("--case-id", metavar="HEX", help="build: the case (64 hex)")
    casefile.add_argument("--identity-key", action="append", default=[], metavar="HEX",
                          help="build: an identity key (repeatable)")
    casefile.add_argument("--identity-file", type=Path, metavar="FILE",
                          help="build: identities, one per line (hashed here, never sent)")
    casefile.add_argument("--alert", type=int, action="append", default=[], metavar="N",
                          help="build: the identity of alert N (repeatable)")
    casefile.add_argument("--ref", action="append", default=[], metavar="REF",
                          help="build: a record platform/<log id>/<index> (repeatable)")
    casefile.add_argument("--out", type=Path, metavar="FILE", help="build: where to write it")
    casefile.add_argument("--rpc-url", help="verify: the chain's JSON-RPC URL (default the "
                          "config's [chain] rpc_url)")


def _disclose_refusal(args: argparse.Namespace, actions: tuple[str, ...]) -> str | None:
    """Why ``jointledger disclose`` without ``--field`` cannot run (a receipts file given
    without ``--field``, a missing ``--config``, ``--tx`` without ``--field``), or ``None``."""
    if args.action not in actions:
        return (f"{args.action!r} is not a disclose action; expected {', '.join(actions)} "
                f"(the regulator's, with --config), or RECEIPTS --field NAME for a "
                f"single-field disclosure. Try: jointledger disclose {args.action} "
                "--field amount --tx LOCAL_TX_ID")
    if args.local_tx_id is not None:
        return ("--tx chooses the record of a single-field disclosure; expected it with "
                "RECEIPTS --field NAME. Try: jointledger disclose RECEIPTS --field amount "
                "--tx LOCAL_TX_ID")
    if args.config is None:
        return (f"disclose {args.action} is the regulator's and needs its node config; "
                f"expected --config REGULATOR_TOML. Try: jointledger disclose {args.action} "
                "--config site/pboc-regulator.toml")
    return None


def _regulator_command(args: argparse.Namespace) -> int:
    """Run ``trace``, ``alerts``, ``faults``, ``disclose`` or ``casefile`` (lazy imports)."""
    if args.command == "trace":
        from ledger_node.cli.regulator_common import CommandRefused
        from ledger_node.cli.trace import ARGV_WARNING, read_identity, run_trace

        identity = args.identity_arg
        if identity is not None:
            print(ARGV_WARNING, file=sys.stderr)
        elif args.identity or args.identity_file is not None:
            try:
                identity = read_identity(prompt=args.identity, identity_file=args.identity_file)
            except CommandRefused as exc:
                print(f"jointledger trace: {exc}", file=sys.stderr)
                return 2
        return run_trace(config=args.config, url=args.url, identity=identity,
                         identity_key=args.identity_key, commitment=args.commitment,
                         as_json=args.json)
    if args.command == "alerts":
        from ledger_node.cli.alerts import run_alerts

        return run_alerts(config=args.config, url=args.url, alert_id=args.alert_id,
                          rule=args.rule, as_json=args.json)
    if args.command == "faults":
        from ledger_node.cli.faults import run_faults

        return run_faults(config=args.config, url=args.url, as_json=args.json)
    if args.command == "disclose":
        from ledger_node.cli.disclose import DISCLOSE_ACTIONS, run_disclose

        if args.field is not None:
            from ledger_node.cli.disclose_field import run_disclose_field

            if args.action in DISCLOSE_ACTIONS and not Path(args.action).exists():
                print(f"jointledger disclose: --field writes a single-field disclosure from "
                      f"a receipts file, but {args.action!r} is the regulator's action (and "
                      "no such file is here); expected RECEIPTS --field NAME, or "
                      f"{args.action} without --field. Try: jointledger disclose "
                      "unionpay.csv.receipts.jsonl --field amount --tx LOCAL_TX_ID",
                      file=sys.stderr)
                return 2
            return run_disclose_field(Path(args.action), field=args.field, out=args.out,
                                      local_tx_id=args.local_tx_id,
                                      commitment=args.commitment, command="disclose")
        refused = _disclose_refusal(args, DISCLOSE_ACTIONS)
        if refused is not None:
            print(f"jointledger disclose: {refused}", file=sys.stderr)
            return 2
        return run_disclose(args.action, config=args.config, url=args.url,
                            commitment=args.commitment, case_id=args.case_id,
                            request_id=args.request_id, wait=args.wait, out=args.out,
                            as_json=args.json)
    from ledger_node.cli.casefile import run_casefile_build, run_casefile_verify

    if args.action == "verify":
        if args.file is None:
            print("jointledger casefile verify: give the CASEFILE to verify", file=sys.stderr)
            return 2
        return run_casefile_verify(args.file, config=args.config, rpc_url=args.rpc_url,
                                   as_json=args.json)
    if args.case_id is None or args.out is None:
        print("jointledger casefile build: give --case-id HEX and --out FILE", file=sys.stderr)
        return 2
    return run_casefile_build(config=args.config, url=args.url, case_id=args.case_id,
                              out=args.out, identity_keys=args.identity_key,
                              identity_file=args.identity_file, alert_ids=args.alert,
                              refs=args.ref, as_json=args.json)


# ---------------------------------------------------------------- governance, disclose-field


def _add_governance_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]
                             ) -> None:
    """``governance`` (members' M-of-N votes) and ``disclose-field`` (a platform proves one
    field of a record): docs/governance.md, docs/commitments.md."""
    governance = commands.add_parser(
        "governance", help="propose, approve, execute and list membership proposals",
        description="The consortium's M-of-N governance as the member whose node config is "
        "given (a platform's serve config or the regulator's; its [keys] account signs): "
        "propose admitting, removing a member or rotating its SM2 key, approve (the approval "
        "reaching the threshold executes it), execute one whose approvals reach a lowered "
        "threshold, list the proposals (docs/governance.md). Exit status 0 done, 1 the chain "
        "refuses (not a voter, unknown or executed proposal, a contract revert), 2 unusable "
        "config, key files or options.")
    actions = governance.add_subparsers(dest="governance_action", required=True,
                                        metavar="ACTION")
    member_options = argparse.ArgumentParser(add_help=False)
    member_options.add_argument("--config", type=Path, required=True,
                                help="the member's node config (TOML): keys, deployment, chain")
    member_options.add_argument("--rpc-url", help="JSON-RPC URL of the chain (overrides the "
                                "config)")
    member_options.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_client_tls_options(member_options)
    propose = actions.add_parser("propose", help="propose a membership change",
                                 parents=[member_options])
    propose.add_argument("what", choices=["add", "remove", "rotate"])
    propose.add_argument("member", metavar="MEMBER",
                         help="add: the new member's name; remove, rotate: a member's name "
                         "or address")
    propose.add_argument("--role", choices=["platform", "regulator", "auditor"],
                         help="add: the new member's role")
    propose.add_argument("--address", help="add: the new member's chain address")
    propose.add_argument("--public-key", type=Path, metavar="PEM",
                         help="add, rotate: the SM2 public key (NAME.sm2.pub.pem)")
    for name, what in (("approve", "approve a proposal (executes it at the threshold)"),
                       ("execute", "execute a proposal whose approvals reach the threshold")):
        action = actions.add_parser(name, help=what, parents=[member_options])
        action.add_argument("proposal_id", type=int, metavar="ID")
    actions.add_parser("list", help="every proposal with its approvals and the threshold",
                       parents=[member_options])

    disclose_field = commands.add_parser(
        "disclose-field", help="write a single-field disclosure of a submitted record",
        description="From the receipts file jointledger submit wrote, write the disclosure "
        "of one field of one record (its value and salt, the other fields' hashes), which "
        "jointledger verify BUNDLE --disclosure FILE checks against the record's proof "
        "bundle. Exit status 0 written, 2 unusable input.")
    disclose_field.add_argument("receipts", type=Path, metavar="RECEIPTS",
                                help="receipts file (JSONL) or one receipt (JSON)")
    disclose_field.add_argument("--field", required=True,
                                help="the record field, e.g. amount_fen")
    disclose_field.add_argument("--tx", dest="local_tx_id", metavar="LOCAL_TX_ID",
                                help="the record's local transaction id")
    disclose_field.add_argument("--commitment", metavar="HEX", help="the record's commitment")
    disclose_field.add_argument("--out", type=Path, metavar="FILE",
                                help="write it here (default: standard output)")


def _governance_or_disclose_field(args: argparse.Namespace) -> int:
    """Run ``governance`` or ``disclose-field`` (lazy imports)."""
    if args.command == "disclose-field":
        from ledger_node.cli.disclose_field import run_disclose_field

        return run_disclose_field(args.receipts, field=args.field, out=args.out,
                                  local_tx_id=args.local_tx_id, commitment=args.commitment)
    from ledger_node.cli.governance import ProposeRequest, run_governance
    from ledger_node.cli.tlsopts import given_client_tls

    request = None
    if args.governance_action == "propose":
        request = ProposeRequest(args.what, args.member, role=args.role,
                                 address=args.address, public_key=args.public_key)
    return run_governance(args.governance_action, config=args.config, rpc_url=args.rpc_url,
                          proposal_id=getattr(args, "proposal_id", None), request=request,
                          as_json=args.json, tls=given_client_tls(args))

# --- A consortium directory: init, up, status (docs/config.md) -------------------------

def _add_site_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``init``, ``up`` and ``status`` of a consortium directory."""
    init = commands.add_parser(
        "init", help="lay out a whole consortium in a directory (keys, configs, TLS, run file)",
        description="Write every member's keys, the consortium file, a CA for DIR and a "
        "certificate per server, one config per node, a Procfile-style run file, systemd "
        "units and a README saying what to start in which order (docs/config.md). Refuses a "
        "non-empty DIR unless --force. Exit status 2 when refused.")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--platform", action="append", default=[], metavar="NAME",
                      help="a platform member with its node (repeatable; at least one)")
    init.add_argument("--shards", action="append", default=[], metavar="NAME=N",
                      help="platform NAME runs N log shards, one node each (default 1)")
    init.add_argument("--regulator", default="pboc", metavar="NAME",
                      help="the regulator member with its node (default pboc)")
    init.add_argument("--auditor", action="append", default=[], metavar="NAME",
                      help="an auditor member, no node (repeatable)")
    init.add_argument("--threshold", type=int, metavar="M",
                      help="governance approvals needed (default: a majority of the members)")
    init.add_argument("--rpc-url", help="use this external chain; no jointledger chain is "
                      "laid out (deploy on it yourself: README.md in DIR)")
    init.add_argument("--host", action="append", default=[], metavar="[NAME=]HOST",
                      help="address every process (HOST) or member NAME's nodes or 'chain' "
                      "(NAME=HOST) bind and are reached at (default 127.0.0.1; repeatable)")
    init.add_argument("--chain-port", type=int, default=8545,
                      help="the chain's port (default 8545)")
    init.add_argument("--first-node-port", type=int, default=8701,
                      help="the first node's port; the others follow it (default 8701)")
    init.add_argument("--force", action="store_true",
                      help="write into a non-empty DIR (existing member keys are kept)")
    regulator_store = commands.add_parser(
        "regulator-store", help="a regulator's store: copy a SQLite store into PostgreSQL")
    store_actions = regulator_store.add_subparsers(dest="store_action", required=True,
                                                   metavar="ACTION")
    copy = store_actions.add_parser(
        "copy", help="copy a SQLite regulator store into an empty PostgreSQL database",
        description="Copy every table of the regulator's SQLite store (stop its node first: "
        "its lock is taken) into the empty PostgreSQL database at --to, in one transaction, "
        "and compare every table's row count. Progress on stderr. Exit status 0 when copied, "
        "1 when refused or failed (nothing committed), 2 for a bad --to (docs/storage.md).")
    copy.add_argument("--from", dest="source", type=Path, required=True, metavar="STORE",
                      help="the SQLite store file (regulator.store of the node's config)")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (the password "
                      "is never printed)")

    up = commands.add_parser(
        "up", help="start a consortium directory's chain and nodes in the foreground",
        description="Start every process of DIR's run file in order (the chain, then the "
        "platform nodes, then the regulator's), each once the previous ones answer; print "
        "their output prefixed by process. Ctrl-C (SIGINT) or SIGTERM stops the nodes, then "
        "the chain; exit status 0 then, 1 if a process dies at start or later.")
    up.add_argument("dir", type=Path, metavar="DIR")
    up.add_argument("--start-timeout", type=float, default=120.0, metavar="SECONDS",
                    help="how long each process may take to answer (default 120)")
    status = commands.add_parser(
        "status", help="each node of a consortium directory: health, log size, anchoring lag",
        description="Ask each node of DIR for its /v1/health (with the TLS settings of its "
        "config) and show a table: up or DOWN, log size, last checkpoint, anchoring lag. "
        "Exit status 0 when every node answers, 1 when one is down.")
    status.add_argument("dir", type=Path, metavar="DIR")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _site_command(args: argparse.Namespace) -> int:
    """Run ``init``, ``up`` or ``status`` (lazy imports)."""
    if args.command == "init":
        from ledger_node.cli.init import InitRefused, plan_from_options, run_init

        try:
            plan = plan_from_options(
                platforms=args.platform, regulator=args.regulator, auditors=args.auditor,
                shards=args.shards, threshold=args.threshold, rpc_url=args.rpc_url,
                hosts=args.host, chain_port=args.chain_port,
                first_node_port=args.first_node_port)
        except InitRefused as exc:
            print(f"jointledger init: {exc}", file=sys.stderr)
            return 2
        return run_init(args.dir, plan, force=args.force)
    if args.command == "up":
        from ledger_node.cli.up import run_up

        return run_up(args.dir, start_timeout=args.start_timeout)
    from ledger_node.cli.status import run_status

    return run_status(args.dir, as_json=args.json)

# --- end of init, up, status ------------------------------------------------------------


def _keys_new(name: str, directory: Path) -> int:
    from ledger_node.crypto.keyfiles import key_paths, new_member_keys

    try:
        keys = new_member_keys(directory, name)
    except FileExistsError as exc:
        print(f"jointledger keys new: {exc}; expected a name with no keys in {directory}. "
              "Try: another --name or --dir (a member's keys are never replaced: rotate them "
              "with jointledger governance propose rotate)", file=sys.stderr)
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
    from ledger_node.cli.advice import config_advice, unreachable_advice
    from ledger_node.cli.client import (
        RecordFileError,
        chain_counterparties,
        chain_regulator_key,
        run_submit,
    )
    from ledger_node.errors import InvalidKey
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
    tls = client_tls(args, config.client_tls)
    try:
        return run_submit(
            args.records,
            url=args.url or config.url,
            platform=config.node.platform,
            sm2_key=config.sm2_key,
            account_key=config.account_key,
            regulator_key=None if args.no_escrow else chain_regulator_key(
                config.deployment, rpc_url, args.regulator, tls),
            counterparties=chain_counterparties(config.deployment, rpc_url, tls),
            out=args.out,
            chunk=args.chunk,
            file_format=args.format,
            tls=tls,
        )
    except RecordFileError as exc:
        print(f"jointledger submit: {exc} (nothing was submitted)", file=sys.stderr)
        return 2
    except InvalidKey as exc:
        print(f"jointledger submit: {config_advice(args.config, str(exc), 'platform')}",
              file=sys.stderr)
        return 2
    except Exception as exc:
        if not _unreachable(exc):
            raise
        print("jointledger submit: " + unreachable_advice(
            "the platform node", args.url or config.url, f"{type(exc).__name__}: {exc}",
            url_hint="correct [http] in the config, or give --url"), file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    import time

    started = time.perf_counter()  # the demo's clock includes importing it (~2 s)
    from ledger_node.demo.run import prepare_demo, run_demo
    from ledger_node.errors import InvalidConfig, InvalidScenario

    try:
        plan = prepare_demo(args.out, scenario_file=args.scenario, payments=args.payments,
                            seed=args.seed, rpc_url=args.rpc_url, started=started,
                            store_url=args.store)
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
                          as_json=args.json, tls=client_tls(args))
    except ValueError as exc:  # unreadable files and malformed documents (LedgerError too)
        from ledger_node.cli.verify import MALFORMED_ADVICE

        text = str(exc)
        print(f"jointledger verify: {text}" + ("" if "Try:" in text else f"; {MALFORMED_ADVICE}"),
              file=sys.stderr)
        return 2


def _reconcile(args: argparse.Namespace) -> int:
    from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
    from ledger_node.cli.reconcile import EXIT_REFUSED, EXIT_UNUSABLE, run_reconcile
    from ledger_node.errors import (
        ChainError,
        DeploymentError,
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
            urls=args.url or [config.url], tls=client_tls(args, config.client_tls),
            counterparty=args.counterparty, counterparty_urls=args.counterparty_url,
            window=window, grace=grace, receipts=args.records, retired_keys=args.retired_key,
            shard=config.node.shard, as_of=as_of,
            out=args.out, matched_bundles=not args.findings_only_bundles)
    except (InvalidConfig, DeploymentError) as exc:
        print(f"jointledger reconcile: {_explained(args, exc)[1]}", file=sys.stderr)
        return EXIT_UNUSABLE
    except ChainError as exc:
        if " does not answer" not in str(exc):
            print(f"jointledger reconcile: {exc}", file=sys.stderr)
        else:
            print(f"jointledger reconcile: {_explained(args, exc)[1]}", file=sys.stderr)
        return EXIT_REFUSED
    except (InvalidWindow, InvalidReconciliationInput, InvalidKey, UnknownCounterparty,
            PairwiseKeyUnavailable, ValueError) as exc:
        print(f"jointledger reconcile: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except LogVerificationFailed as exc:
        print(f"jointledger reconcile: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def _chain_tls(args: argparse.Namespace) -> ServerTls | None:
    """``jointledger chain``'s server TLS from ``--tls-cert``/``--tls-key``/``--client-ca``
    (checked when the chain starts). Raises :class:`InvalidConfig` naming the option for a
    certificate without its key (or the reverse), or a client CA without either."""
    from ledger_node.errors import InvalidConfig
    from ledger_node.tls import ServerTls

    if args.tls_cert is None and args.tls_key is None:
        if args.client_ca is not None:
            raise InvalidConfig("--client-ca needs --tls-cert and --tls-key: mutual TLS is TLS")
        return None
    if args.tls_cert is None or args.tls_key is None:
        missing = "--tls-cert" if args.tls_cert is None else "--tls-key"
        raise InvalidConfig(f"{missing} is missing: --tls-cert and --tls-key come together")
    return ServerTls(args.tls_cert, args.tls_key, args.client_ca)


def _fsck(args: argparse.Namespace) -> int:
    from ledger_node.chain.adapter import Deployment, LedgerChain
    from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL
    from ledger_node.cli.fsck import EXIT_UNUSABLE, run_platform_fsck, run_regulator_fsck
    from ledger_node.client.sdk import NodeClient, RegulatorCopyClient
    from ledger_node.errors import InvalidConfig, StoreUnavailable
    from ledger_node.tls import NO_CLIENT_TLS

    def unusable(message: str) -> int:
        print(f"jointledger fsck: {message}", file=sys.stderr)
        return EXIT_UNUSABLE

    try:
        if args.role == "regulator":
            from ledger_node.regulator.config import load_regulator_config

            reg = load_regulator_config(args.config) if args.config else None
            store: Path | str | None = args.store or (reg.regulator.store_location
                                                       if reg else None)
            name = args.name or (reg.regulator.name if reg else None)
            if store is None or name is None:
                return unusable("give STORE and --name, or --config")
            if isinstance(store, Path) and not store.is_file():
                return unusable(f"no store at {store}; expected the store file of a "
                                "stopped regulator node. Try: the config's [regulator] store, "
                                "or STORE")
            deployment = args.deployment or (reg.deployment if reg else None)
            rpc_url = args.rpc_url or (reg.rpc_url or DEFAULT_CHAIN_URL if reg else None)
            tls = client_tls(args, reg.client_tls if reg else NO_CLIENT_TLS)
            chain = (LedgerChain.from_rpc(rpc_url, **tls.requests_options())
                     .attach(Deployment.load(deployment)) if rpc_url and deployment else None)
            return run_regulator_fsck(store, name, chain=chain)
        from ledger_node.platform.config import load_keys, load_serve_config
        from ledger_node.regulator.node import node_audience

        config = load_serve_config(args.config) if args.config else None
        store = args.store or (config.node.store_path if config else None)
        if store is None:
            return unusable("give STORE or --config")
        if not store.is_file():
            return unusable(f"no store at {store}; expected the store file of a stopped "
                            "platform node (it appears when the node first runs). Try: the "
                            "config's [node] store, or STORE")
        deployment = args.deployment or (config.deployment if config else None)
        rpc_url = args.rpc_url or (config.rpc_url or DEFAULT_CHAIN_URL if config else None)
        if rpc_url and deployment is None:
            return unusable("--rpc-url needs --deployment (or --config) to find the contract")
        keys = load_keys(config) if config else None
        tls = client_tls(args, config.client_tls if config else NO_CLIENT_TLS)
        chain = (LedgerChain.from_rpc(rpc_url, **tls.requests_options())
                 .attach(Deployment.load(deployment)) if rpc_url and deployment else None)
        regulator = None
        if args.repair_from:
            if keys is None:
                return unusable("--repair-from needs --config: the platform signs its "
                                "request to the regulator with its keys")
            with NodeClient(args.repair_from, tls=tls) as probe:
                name = str(probe.health()["name"])
            regulator = RegulatorCopyClient(args.repair_from, keys.address, keys.sm2_key,
                                            node_audience(name), tls=tls)
        return run_platform_fsck(store, chain=chain, keys=keys, regulator=regulator,
                                 rebuild_levels=args.rebuild_levels)
    except InvalidConfig as exc:
        return unusable(_explained(args, exc)[1])
    except StoreUnavailable as exc:  # not checked, so neither clean (0) nor damaged (1)
        return unusable(str(exc))


_CONFIG_OF: dict[str, ConfigKind] = {
    "submit": "platform", "reconcile": "platform", "console-login": "regulator",
    "trace": "regulator", "alerts": "regulator", "faults": "regulator",
    "disclose": "regulator", "casefile": "regulator", "governance": "member"}
"""The config each command's ``--config`` takes (``serve``, ``fsck`` and ``risk``: the
``--role`` given)."""


def _unreachable(exc: Exception) -> bool:
    """Whether ``exc`` is a transport failure (httpx's or requests', a TLS or socket error)
    rather than a bug; checked through ``sys.modules`` so that the CLI's start imports
    neither library."""
    httpx = sys.modules.get("httpx")
    requests = sys.modules.get("requests")
    ssl = sys.modules.get("ssl")
    return (isinstance(exc, ConnectionError | TimeoutError)
            or (ssl is not None and isinstance(exc, ssl.SSLError))
            or (httpx is not None and isinstance(exc, httpx.TransportError))
            or (requests is not None and isinstance(exc, requests.exceptions.RequestException)))


def _server_name(args: argparse.Namespace) -> str:
    """What the command was talking to, for an unreachable-server line."""
    if getattr(args, "url", None):
        return "the node"
    return "the chain" if getattr(args, "rpc_url", None) else "the server"


def _explained(args: argparse.Namespace, exc: LedgerError) -> tuple[int, str]:
    """The exit status and the line (what was found, expected, what to try) for a
    domain error no command handled itself: a config (2), a missing deployment file (2), a
    chain that does not answer (1), the contract refusing the account's role (1), a server
    that is not a jointledger node (1); anything else is named by its type (1)."""
    from ledger_node.cli.advice import (
        EXIT_REFUSED,
        EXIT_UNUSABLE,
        config_advice,
        deployment_advice,
        unreachable_advice,
    )
    from ledger_node.errors import ApiError, ChainError, ContractRevert, DeploymentError

    if isinstance(exc, InvalidConfig):
        detail = str(exc)
        if getattr(args, "config", None) is None and args.command not in ("serve", "fsck"):
            return EXIT_UNUSABLE, (detail if "Try:" in detail
                                   else f"{detail}. Try: jointledger {args.command} --help")
        if detail.startswith("--name "):  # serve: the member named is not the config's
            return EXIT_UNUSABLE, (f"{detail}; expected the member the config is for. Try: "
                                   "--name as the config names it, or that member's own "
                                   "--config")
        if detail.startswith("--"):  # an option, not the config file
            return EXIT_UNUSABLE, (detail if "Try:" in detail
                                   else f"{detail}. Try: jointledger {args.command} --help")
        role = getattr(args, "role", None)
        expected: ConfigKind = _CONFIG_OF.get(args.command) or (
            "regulator" if role == "regulator" else "platform")
        return EXIT_UNUSABLE, config_advice(getattr(args, "config", None), detail, expected)
    if isinstance(exc, DeploymentError):
        return EXIT_UNUSABLE, deployment_advice(str(exc))
    if isinstance(exc, ContractRevert) and exc.name.startswith("Membership_Not"):
        wanted = exc.name.removeprefix("Membership_Not").lower()
        return EXIT_REFUSED, (f"the contract refused it with {exc.name}: the account of "
                              f"{getattr(args, 'config', None) or 'the keys given'} is not an "
                              f"active {wanted} member; expected the {wanted}'s own config. "
                              f"Try: --config with the {wanted}'s node config (and --role "
                              f"{wanted} where the command takes it)")
    if isinstance(exc, ChainError) and " does not answer" in str(exc):
        url = getattr(args, "rpc_url", None) or str(exc).split(" does not answer")[0].rsplit(
            " ", 1)[-1]
        return EXIT_REFUSED, unreachable_advice("the chain", url, str(exc))
    if isinstance(exc, ApiError) and exc.status in (404, 405):
        url = getattr(args, "url", None) or "the URL given"
        return EXIT_REFUSED, (f"{url} answered {exc.status} {exc.title} to a jointledger "
                              "node's route; expected a jointledger node's API there. Try: the "
                              "node's URL (jointledger status DIR lists them), not the chain's")
    return EXIT_REFUSED, f"{type(exc).__name__}: {exc}"


def _serve_regulator(args: argparse.Namespace) -> int:
    """``serve --role regulator``: the node, an API replica, or one ingest worker."""
    from api.regulator_server import run_ingest_worker, serve_regulator_file
    from ledger_node.errors import InvalidConfig
    from ledger_node.regulator.node import IngestShare

    if args.ingest_worker:
        index, _, of = str(args.ingest_worker).partition("/")
        try:
            share = IngestShare(int(index), int(of))
        except ValueError:
            raise InvalidConfig(f"--ingest-worker {args.ingest_worker!r}: expected K/N, "
                                "0 <= K < N") from None
        run_ingest_worker(args.config, share, name=args.name, rpc_url=args.rpc_url)
        return 0
    serve_regulator_file(args.config, name=args.name, rpc_url=args.rpc_url,
                         ingest=args.ingest == "on", workers=args.workers, port=args.port)
    return 0


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
            from ledger_node.cli.chain import limits_from_options, run_chain

            return run_chain(args.host, args.port, consortium_path=args.consortium,
                             deployment_path=args.deployment, data=args.data,
                             limits=limits_from_options(args),
                             tls=_chain_tls(args), allow_plaintext=args.allow_plaintext)
        if args.command == "serve" and args.role == "regulator":
            return _serve_regulator(args)
        if args.command == "serve":
            from api.server import serve_platform_file
            from ledger_node.errors import InvalidConfig

            if args.ingest != "on" or args.workers != 1 or args.ingest_worker:
                raise InvalidConfig("--ingest and --workers are the regulator's options")
            if args.port is not None:
                raise InvalidConfig("--port is the regulator's option (a platform node's "
                                    "port is its config's: its log's clients reach it there)")

            serve_platform_file(args.config, name=args.name, rpc_url=args.rpc_url)
            return 0
        if args.command == "submit":
            return _submit(args)
        if args.command == "proof":
            from ledger_node.cli.client import run_proof

            return run_proof(args.url, args.index, out=args.out, wait=args.wait,
                             tls=client_tls(args))
        if args.command == "checkpoints":
            from ledger_node.cli.client import run_checkpoints

            return run_checkpoints(args.url, after=args.after, limit=args.limit,
                                   tls=client_tls(args))
        if args.command == "reconcile":
            return _reconcile(args)
        if args.command == "console-login":
            from ledger_node.cli.console import run_console_login
            from ledger_node.cli.tlsopts import given_client_tls

            return run_console_login(config=args.config, url=args.url, name=args.name,
                                     sm2_key=args.sm2_key, account_key=args.account_key,
                                     keys_dir=args.keys, tls=given_client_tls(args))
        if args.command in ("trace", "alerts", "faults", "disclose", "casefile"):
            return _regulator_command(args)
        if args.command in ("governance", "disclose-field"):
            return _governance_or_disclose_field(args)
        if args.command == "regulator-store":
            from ledger_node.cli.regulator_store import run_copy

            return run_copy(args.source, args.target)
        if args.command in ("init", "up", "status"):
            return _site_command(args)
        if args.command == "fsck":
            return _fsck(args)
        if args.command == "risk":
            from ledger_node.cli.risk import run_risk
            from ledger_node.cli.tlsopts import given_client_tls

            return run_risk(args.action, config=args.config, role=args.role,
                            rpc_url=args.rpc_url, fingerprints=args.fingerprints,
                            source=args.source, reason=args.reason, accounts=args.account,
                            as_json=args.json, tls=given_client_tls(args))
    except LedgerError as exc:
        status, line = _explained(args, exc)
        print(f"jointledger {args.command}: {line}", file=sys.stderr)
        return status
    except Exception as exc:
        if not _unreachable(exc):
            raise
        from ledger_node.cli.advice import EXIT_REFUSED, unreachable_advice

        url = getattr(args, "url", None) or getattr(args, "rpc_url", None) or "its URL"
        print(f"jointledger {args.command}: "
              f"{unreachable_advice(_server_name(args), str(url), f'{type(exc).__name__}: {exc}')}",
              file=sys.stderr)
        return EXIT_REFUSED
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse guarantees one


if __name__ == "__main__":
    sys.exit(main())
