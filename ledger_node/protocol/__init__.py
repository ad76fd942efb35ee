"""The protocol's rules: records, commitments, escrows, disclosures, pairwise tags, AML rules, risk
devices and the risk list, request signing, proof bundles and reconciliation matching.
"""
