"""The SDK: HTTP clients of platform and regulator nodes, and sharded submission."""
