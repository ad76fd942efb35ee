"""A platform's node (``node.py``) and its parts: intake, the group-commit writer, log queries,
disclosures and metrics; the store, the sealer that anchors checkpoints and the chain watch.
"""
