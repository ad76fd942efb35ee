"""jointledger: a permissioned joint ledger of unlinkable, regulator-traceable payment commitments.

Pure protocol logic (hashes, crypto, commitments, Merkle log) lives in modules with no I/O;
the chain is reached only through :mod:`ledger_node.chain.adapter`. ``docs/architecture.md``
gives the layers.

Importing this package first imports py_ecc, which raises the process's recursion limit to
100,000 once, on its first import (web3 and py-evm import it), and brings the limit back to
:data:`~ledger_node.jsonlimits.SAFE_RECURSION_LIMIT`, so that no C-level parser of any entry
point (the CLI, the servers, the scripts) can recurse past its stack.
"""

import sys as _sys

import py_ecc as _py_ecc  # noqa: F401  (imported for its side effect, then undone below)

from ledger_node.jsonlimits import SAFE_RECURSION_LIMIT as _SAFE_RECURSION_LIMIT

_sys.setrecursionlimit(_SAFE_RECURSION_LIMIT)

__version__ = "0.1.0"
