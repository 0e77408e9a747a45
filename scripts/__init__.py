"""undoit: rehearsed, verified rollbacks for Docker Compose projects.

The packages are layers; each imports only from those before it (tests/test_house.py):
errors (the one domain error) < output < plan < store < repo < stack < backup <
rollback < offsite < rehearse < cli. dodo.py declares the tasks.
"""

__version__ = "0.1.0"
