"""``jointledger risk``: the shared risk-device list from the command line (docs/risklist.md).

A member's own keys and chain come from its node config (a platform's ``serve`` config, or
with ``--role regulator`` the regulator's); the list is synced from the chain into memory
for each run. Exit status: 0 done (for ``check``: nothing listed), 3 ``check`` found a
listed device, 2 bad input (fingerprint, reason, config), 1 any other failure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from ledger_node.chain.adapter import Deployment, LedgerChain
from ledger_node.cli.advice import ConfigKind, config_advice
from ledger_node.crypto import gmcrypto
from ledger_node.crypto.keyfiles import load_member_keys
from ledger_node.errors import (
    InvalidConfig,
    InvalidFingerprint,
    InvalidKey,
    UnknownRiskReason,
)
from ledger_node.protocol.risklist import RiskHit, RiskList, deliver_list_key, distribute_list_key
from ledger_node.tls import NO_CLIENT_TLS, ClientTls, merge_client_tls

EXIT_LISTED: Final = 3


def member_chain(config: Path, role: str, rpc_url: str | None,
                 tls: ClientTls = NO_CLIENT_TLS
                 ) -> tuple[LedgerChain, list[gmcrypto.SM2PrivateKey]]:
    """The member's chain client (its account, bound to the deployment) and SM2 keys, current
    first, from a platform node config or, for ``role == "regulator"``, a regulator config.
    The chain is reached with the config's ``[tls]``, ``tls`` (the command line's options)
    replacing it.

    Raises :class:`InvalidConfig` for unusable configs or key files.
    """
    retired: tuple[Path, ...] = ()
    if role == "regulator":
        from ledger_node.regulator.config import load_regulator_config

        regulator = load_regulator_config(config)
        sm2, account, deployment_path = (regulator.sm2_key, regulator.account_key,
                                         regulator.deployment)
        retired, url = regulator.retired_sm2, regulator.rpc_url
        configured = regulator.client_tls
    else:
        from ledger_node.platform.config import load_serve_config

        platform = load_serve_config(config)
        sm2, account, deployment_path = platform.sm2_key, platform.account_key, \
            platform.deployment
        url, configured = platform.rpc_url, platform.client_tls
    try:
        keys = load_member_keys(sm2, account)
        old = [gmcrypto.private_key_from_pem(path.read_bytes()) for path in retired]
    except (InvalidKey, OSError) as exc:
        raise InvalidConfig(f"key files: {exc}") from None
    from ledger_node.chain.rpc_server import DEFAULT_CHAIN_URL

    deployment = Deployment.load(deployment_path)
    options = merge_client_tls(configured, tls).requests_options()
    chain = LedgerChain.from_rpc(rpc_url or url or DEFAULT_CHAIN_URL, **options)
    return chain.with_account(keys.account).attach(deployment), [keys.sm2_key, *old]


def _hit_json(fingerprint: str, hit: RiskHit | None) -> dict[str, Any]:
    if hit is None:
        return {"fingerprint": fingerprint, "listed": False}
    return {"fingerprint": hit.fingerprint, "listed": True, "entry": hit.entry.hex(),
            "reason": hit.reason.label, "reason_code": int(hit.reason), "adder": hit.adder,
            "epoch": hit.epoch, "block": hit.block_number}


def _hit_line(fingerprint: str, hit: RiskHit | None) -> str:
    if hit is None:
        return f"clean   {fingerprint}"
    return (f"LISTED  {hit.fingerprint}  reason={hit.reason.label} by={hit.adder} "
            f"epoch={hit.epoch} block={hit.block_number} entry={hit.entry.hex()}")


def read_fingerprints(values: Sequence[str], source: Path | None, stdin: TextIO) -> list[str]:
    """The fingerprints given as arguments, then those of ``source`` (one per line, blank
    lines and ``#`` comments skipped; ``-`` is standard input)."""
    found = list(values)
    if source is not None:
        text = stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
        found += [line for line in (raw.strip() for raw in text.splitlines())
                  if line and not line.startswith("#")]
    return found


def run_risk(action: str, *, config: Path, role: str = "platform", rpc_url: str | None = None,
             fingerprints: Sequence[str] = (), source: Path | None = None,
             reason: str | None = None, accounts: Sequence[str] = (), as_json: bool = False,
             out: TextIO | None = None, err: TextIO | None = None,
             connect: Callable[..., tuple[LedgerChain, list[gmcrypto.SM2PrivateKey]]]
             = member_chain, tls: ClientTls = NO_CLIENT_TLS) -> int:
    """Run one ``jointledger risk`` action; return the exit status (module docstring).

    Output goes to ``out`` and ``err`` (default: standard output and error at call time).
    ``tls`` (the command line's TLS options) replaces the config's ``[tls]``.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    def emit(document: Any, line: str) -> None:
        print(json.dumps(document) if as_json else line, file=out)

    try:
        items = read_fingerprints(fingerprints, source, sys.stdin)
        chain, keys = (connect(config, role, rpc_url) if not tls.configured
                       else connect(config, role, rpc_url, tls))
        if action == "distribute":
            epoch, outcome = distribute_list_key(chain, keys)
            emit({"epoch": epoch, "tx_hash": "0x" + outcome.tx_hash.hex()},
                 f"opened list-key epoch {epoch}: ring delivered to every platform and "
                 f"regulator (tx 0x{outcome.tx_hash.hex()})")
            return 0
        if action == "deliver":
            epoch, delivered = deliver_list_key(chain, keys, list(accounts) or None)
            names = [] if delivered is None else [str(e.args["account"])
                                                  for e in delivered.events]
            emit({"epoch": epoch, "delivered": names},
                 f"epoch {epoch}: delivered to {', '.join(names) or 'nobody (none missing)'}")
            return 0
        risk_list = RiskList(chain, keys)
        risk_list.sync()
        if action == "status":
            emit({"member": risk_list.member, "epoch": risk_list.epoch,
                  "epoch_open": risk_list.epoch_open, "key_epoch": risk_list.key_epoch,
                  "entries": len(risk_list), "as_of_block": risk_list.synced_block},
                 f"{len(risk_list)} entries; epoch {risk_list.epoch} "
                 f"({'open' if risk_list.epoch_open else 'closed'}); this member holds keys "
                 f"up to epoch {risk_list.key_epoch}; as of block {risk_list.synced_block}")
            return 0
        if not items:
            raise InvalidFingerprint("give at least one fingerprint (or --from FILE)")
        if action == "check":
            found = risk_list.lookup_many(items)
            for fingerprint, hit in found:
                emit(_hit_json(fingerprint, hit), _hit_line(fingerprint, hit))
            return EXIT_LISTED if any(hit for _, hit in found) else 0
        if action == "add":
            if reason is None:
                raise UnknownRiskReason(None, "give --reason")
            hits, outcome = risk_list.add_many([(fp, reason) for fp in items])
            tx = "0x" + outcome.tx_hash.hex()
            for hit in hits:
                emit(_hit_json(hit.fingerprint, hit) | {"tx_hash": tx},
                     "added  " + _hit_line(hit.fingerprint, hit).split(maxsplit=1)[1])
            return 0
        for fingerprint in items:
            if action == "remove":
                hit, outcome = risk_list.remove(fingerprint)
                tx = "0x" + outcome.tx_hash.hex()
                emit(_hit_json(fingerprint, hit) | {"tx_hash": tx},
                     f"removed {hit.fingerprint} (tx {tx})")
            else:  # propose-removal
                hit, proposal_id, outcome = risk_list.propose_removal(fingerprint)
                emit(_hit_json(fingerprint, hit) | {"proposal": proposal_id},
                     f"proposal {proposal_id} removes {hit.fingerprint} (listed by "
                     f"{hit.adder}); it executes at the consortium's threshold")
        return 0
    except InvalidConfig as exc:
        expected: ConfigKind = "regulator" if role == "regulator" else "platform"
        print(f"jointledger risk {action}: {config_advice(config, str(exc), expected)}",
              file=err)
        return 2
    except (InvalidFingerprint, UnknownRiskReason) as exc:
        print(f"jointledger risk {action}: {exc}", file=err)
        return 2
    except OSError as exc:
        print(f"jointledger risk {action}: {exc}", file=err)
        return 2
