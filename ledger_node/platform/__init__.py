"""A platform's node: intake, the store, the sealer that anchors checkpoints, the membership cache
and the chain watch.
"""
