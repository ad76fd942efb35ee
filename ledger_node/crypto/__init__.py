"""国密 primitives (SM2, SM3, SM4-GCM), hashes, length-prefixed encodings and key files."""
