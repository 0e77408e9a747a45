"""The redactor alone (pure): every written form of a value is masked, and masked before
any cut, so a cut never leaves a secret's start behind."""

from __future__ import annotations

import html
import io
import json
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

from scripts.output.redact import MASK, Masked, Redactor

# a value every escaping changes: quotes, &, <, >, /, +, %, a space, non-ASCII
VALUE = 'Sm7P"q&w<x> Y/z+K%e9\u00e9'


def written_forms(v: str) -> list[str]:
    return [v, json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1], quote(v, safe=""), quote(v),
            quote_plus(v), escape(v), escape(v, {'"': "&quot;", "'": "&apos;"}), html.escape(v)]


def test_every_written_form_of_a_value_is_masked():
    r = Redactor([VALUE])
    forms = written_forms(VALUE)
    assert len(set(forms)) >= 6  # the forms differ: each one is a case of its own
    for form in forms:
        assert r(f"before {form} after") == f"before {MASK} after", form


def test_a_value_is_masked_before_the_text_is_cut():
    secret = "smtp-pw-4f0c9a7e2d"
    r = Redactor([secret])
    line = "x" * 150 + secret + " and the rest"
    assert secret[:10] in r(line[:160])  # cut first, then masked: the start leaks
    assert r.clip(line, 160) == ("x" * 150 + MASK + " and the rest")[:160]
    assert r.tail("output: " + secret, 12) == f"output: {MASK}"[-12:]


def test_learnt_values_mask_from_then_on():
    r = Redactor(["first-secret"])
    r.learn(["second-secret"])
    assert r("first-secret second-secret") == f"{MASK} {MASK}"


def test_a_masked_stream_never_lets_a_value_through_split_writes():
    out = io.StringIO()
    stream = Masked(out, lambda: Redactor([VALUE]))
    stream.write("token: " + VALUE[:7])  # one print in two writes, the value cut between them
    stream.write(VALUE[7:] + "\nnext line")
    stream.flush()
    assert out.getvalue() == f"token: {MASK}\nnext line"
