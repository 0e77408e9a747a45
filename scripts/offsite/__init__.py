"""Sets beyond this machine: sent to and fetched from restic, retention (prune, release),
and a lost machine's recovery into a fresh clone.

Imports: every package but rehearse and cli.
"""
