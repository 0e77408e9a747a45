"""undoit: rehearsed, verified rollbacks for Docker Compose projects."""

__version__ = "0.1.0"
