"""The SDK: HTTP clients of platform and regulator nodes, sharded submission, and the log
follower that verifies what a node serves against the chain (regulator and reconciliation)."""
