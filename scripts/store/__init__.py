"""Sets on disk and what they hold: listing entries and listings (sorted on disk,
compared as streams), archives (pax tar through zstd, checked as they stream), the set
folders and their manifests, the lock, the journal of intents, the offsite repository's
restic adapter; writes that survive a crash (durable).

Imports: errors, output, plan.
"""
