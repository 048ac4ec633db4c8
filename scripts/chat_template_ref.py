#!/usr/bin/env python3
"""Renders chat templates exactly as Hugging Face transformers does, as the
independent reference for tests/test_chat_template.c.

transformers (utils/chat_template_utils.py) renders with Jinja2's
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) and the
loopcontrols extension, replaces the `tojson` filter with json.dumps
(ensure_ascii=False) and adds the globals `raise_exception` and
`strftime_now`. This script does the same.

Usage: chat_template_ref.py CASES.json OUT.json
CASES.json is a list of {"template": str, "vars": {...}}; OUT.json gets one
{"ok": true, "text": str} or {"ok": false, "error": str} per case."""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    env = environment()
    out = []
    for c in cases:
        try:
            text = env.from_string(c["template"]).render(**c["vars"])
            out.append({"ok": True, "text": text})
        except Exception as e:  # the C side must fail too; the message is compared
            out.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
