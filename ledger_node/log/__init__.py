"""The RFC 9162 Merkle log: trees and proofs, leaves, and signed checkpoints (pure, no I/O)."""
