"""The plan: phases.toml and the kit's settings read once into frozen dataclasses, checked
to the leaf, with no side effects (plan, settings, decide: the matrix).

Imports: errors, output.
"""
