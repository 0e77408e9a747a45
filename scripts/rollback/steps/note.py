"""The note step: a line for the operator (a manual action); on a terminal, Enter goes on."""

from __future__ import annotations

from ...plan.registry import STEPS, StepType


@STEPS.register
class Note(StepType):
    name = "note"
    summary = "show a manual instruction; on a terminal, wait for Enter"
    example = {"do": "note", "text": "Tell the on-call channel the rollback is done"}
    required = frozenset({"text"})

    def describe(self, run, step):
        return f"note: {step.args['text']}"

    def act(self, ctx, step):
        print(f"\n  NOTE: {step.args['text']}\n", flush=True)
        if ctx.interactive:
            input("  Press Enter when done (Ctrl-C to stop) ")
            return "confirmed"
        return "shown (non-interactive)"
