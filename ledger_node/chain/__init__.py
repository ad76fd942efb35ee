"""The chain seam: the adapter (the only code that talks to a chain), contract artifacts, solc,
consortium deployment, the embedded chain's store and its JSON-RPC server.
"""
