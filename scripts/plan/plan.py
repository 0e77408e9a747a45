"""The plan: phases.toml + settings -> frozen dataclasses, checked once, with no side effects.

The public face of the plan package, what the rest of the kit imports: model.py holds
the dataclasses, read.py reads the file (one reader per table), procedures.py the
phases, scenarios and their steps and checks, against the types in registry.py.
"""

from __future__ import annotations

from .model import (TIMEOUTS, Change, Check, MatrixRow, Offsite, Plan, Procedure, Step, Volume,
                    duration_minutes)
from .read import load, load_for, plan_path

__all__ = ["TIMEOUTS", "Change", "Check", "MatrixRow", "Offsite", "Plan", "Procedure", "Step", "Volume",
           "duration_minutes", "load", "load_for", "plan_path"]
