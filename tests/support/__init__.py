"""Test support code: PKI (pki.py), accounts (accounts.py), install (install.py), run-as (runas.py)."""
