"""A platform node's own log as the reconciliation matcher reads it: its node's
``POST /v1/reconciliation`` trusts its own store for its own side."""

from __future__ import annotations

from typing import Any

from ledger_node.log.leaf import LeafSummary
from ledger_node.platform.node import PlatformNode
from ledger_node.protocol.bundle import ProofBundle


class NodeLogView:
    """A platform node's own log as a :class:`~ledger_node.protocol.reconciliation.LogView` (the
    node's reconciliation endpoint trusts its own store)."""

    def __init__(self, node: PlatformNode) -> None:
        self.node = node
        self.platform = node.platform
        self.log_id = node.log_id
        latest = node.latest_checkpoint()
        self._size = 0 if latest is None else latest.tree_size

    @property
    def anchored_size(self) -> int:
        """The size of the node's latest anchored checkpoint when this view was made."""
        return self._size

    def summary(self, index: int) -> LeafSummary:
        """The summary of leaf ``index``."""
        return self.node.leaf_summary(index)

    def bundle(self, index: int) -> ProofBundle | None:
        """The node's proof bundle of leaf ``index``."""
        return self.node.proof_bundle(index)

    def describe(self) -> dict[str, Any]:
        """Platform, log id and anchored size."""
        latest = self.node.latest_checkpoint()
        out: dict[str, Any] = {"platform": self.platform, "log_id": self.log_id.hex(),
                               "verified_size": self._size}
        if latest is not None:
            out["root"] = latest.root.hex()
        return out
