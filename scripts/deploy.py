#!/usr/bin/env python3
"""Deploy JointLedger on any Ethereum JSON-RPC chain for the members of a consortium file.

    .venv/bin/python scripts/deploy.py --rpc-url URL --deployer-key FILE \\
        --consortium consortium.toml --out deployment.json [--fund-ether N]

The deployer key file holds the hex private key of an account with funds for the
deployment (on a Besu free-gas network any account will do). ``--fund-ether`` sends each
member that much from the deployer, for development chains where members need gas money.
The deployment file (chain id, contract address, deployment block, ABI hash) is what every
member's node loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eth_account import Account

from ledger_node.chain.adapter import LedgerChain
from ledger_node.chain.consortium import load_consortium
from ledger_node.errors import LedgerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain")
    parser.add_argument("--deployer-key", type=Path, required=True,
                        help="file with the deploying account's hex private key")
    parser.add_argument("--consortium", type=Path, required=True, help="consortium file (TOML)")
    parser.add_argument("--out", type=Path, default=Path("deployment.json"),
                        help="deployment file to write (default deployment.json)")
    parser.add_argument("--fund-ether", type=int, default=0,
                        help="ether to send each member from the deployer (development chains)")
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"deploy: {args.out} exists; refusing to overwrite a deployment file",
              file=sys.stderr)
        return 1
    try:
        consortium = load_consortium(args.consortium)
        try:
            deployer = Account.from_key(args.deployer_key.read_text(encoding="ascii").strip())
        except (OSError, ValueError) as exc:
            print(f"deploy: cannot use deployer key {args.deployer_key}: {exc}", file=sys.stderr)
            return 1
        chain = LedgerChain.from_rpc(args.rpc_url, deployer)
        for member in consortium.members if args.fund_ether > 0 else ():
            chain.fund(member.address, args.fund_ether * 10**18, deployer)
        deployment = chain.deploy(list(consortium.members), consortium.threshold)
    except LedgerError as exc:
        print(f"deploy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    deployment.save(args.out)
    print(f"JointLedger {deployment.address} on chain {deployment.chain_id}, block "
          f"{deployment.deploy_block}; {len(consortium.members)} members, "
          f"{consortium.threshold}-of-N; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
