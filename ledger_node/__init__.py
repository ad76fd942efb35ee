"""jointledger: a permissioned joint ledger of unlinkable, regulator-traceable payment commitments.

Pure protocol logic (hashes, crypto, commitments, Merkle log) lives in modules with no I/O;
the chain is reached only through :mod:`ledger_node.chain.adapter`.
"""

__version__ = "0.1.0"
