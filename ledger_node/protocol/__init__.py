"""The protocol's rules: records, commitments, escrows, disclosures, pairwise tags and the keys
in force, AML rules, risk devices and the risk list, request signing, proof bundles, the check
runner they share with case files, and reconciliation matching.
"""
