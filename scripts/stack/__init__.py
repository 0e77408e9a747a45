"""The running stack: which engine and whether its folders are this host's, compose for
one project, volumes (listings, exports, staging, swaps), images and their pins, the
plan checked against what compose knows, a sandbox's removal, the engine's events,
plan:init's starter plan, git-ignored files compose reads.

Imports: errors, output, plan, store, repo.
"""
