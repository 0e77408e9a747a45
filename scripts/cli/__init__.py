"""The plan -> doit task dicts, one family a module (backups, rollbacks, copies,
project); the action wrapper (one line and an exit code per failure, signals, masked
output); the parameters each task takes (options); tables for people (report).

Imports: every package. Nothing in the kit imports it.
"""
