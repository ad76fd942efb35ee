"""The FastAPI HTTP layer over a ledger node (see issue: node and HTTP API)."""
