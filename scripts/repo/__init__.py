"""git for the project under rollback: refs and tags, backup branches, file restore plans
and their safety copies, every set's manifest recorded in git (records).

Imports: errors, output, plan, store.
"""
