"""`doit backup` and `doit checkpoint:<phase>`: a set of every volume that changed, taken
under its quiesce policy, with git refs and the stack's state; change cycles (which
set a rollback restores).

Imports: errors, output, plan, store, repo, stack.
"""
