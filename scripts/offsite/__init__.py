"""offsite."""
