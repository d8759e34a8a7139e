"""Project tooling that works on what `sam build` ships (see tools/deployed.py)."""
