"""A rollback as a run: the set it restores chosen and proven, its steps and checks, the
restore of a volume, the run record and the rollback log, undo, and the repair of what
a killed run left (repair: where the journal's intents are acted on).

Imports: errors, output, plan, store, repo, stack, backup.
"""
