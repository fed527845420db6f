"""Evaluation protocols: identity retrieval after hair transfer (identity.py), inversion metrics (inversion.py)."""
