"""`doit rehearse`: every rollback drilled in a sandbox (a worktree, a compose project,
scratch volumes), a phase's change applied, seen, rolled back and applied again; the
reports as JSON and JUnit.

Imports: every package but cli.
"""
