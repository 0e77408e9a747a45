"""What the kit writes for people: one line at a time, progress on long work, and every
secret masked before anything is cut or wrapped (progress, redact).

Imports: errors only. Every other package may import it.
"""
