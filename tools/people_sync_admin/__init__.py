"""people-sync's operator tool: `python -m tools.people_sync_admin --stack <name> orgs ...` (see cli.py).

Command groups: `orgs` (onboarding, issue 13); `syncs`, `failed` and `events` (issue 14) register on the
same root group.
"""
