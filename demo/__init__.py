"""The bundled demo of undoit: a 7-container miniature of the runbook's system.

demo/stack is its compose project (materialized into .undoit/demo as a git repository),
demo/changes the runbook's phases as patches, demo/kit.py its tasks and helpers. The kit
in scripts/ does not import this package; dodo.py, the tests and the benches do.
"""
