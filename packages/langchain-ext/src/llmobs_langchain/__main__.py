"""``python -m llmobs_langchain [-m module | script.py] [args...]``: run an application with every
LangChain run traced, without changing its code (Python runs nothing of ours unless something imports
us; this launcher is that import)."""

from __future__ import annotations

import os
import runpy
import sys

from llmobs_langchain import instrument

USAGE = "usage: python -m llmobs_langchain (-m module | script.py) [args...]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or (argv[0] == "-m" and len(argv) < 2):
        print(USAGE, file=sys.stderr)
        return 2
    instrument()
    if argv[0] == "-m":
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python script.py` would
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
