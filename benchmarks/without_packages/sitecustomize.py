"""Make Python behave as if the packages in ``$HIDE_PACKAGES`` (comma-separated) were not installed.

The GPU machines the benchmark runs on have no ``datasets`` or ``evaluate`` (and no package index to get
them); the CPU rehearsal (``bash benchmarks/gpu.sh --rehearse``) and tests/test_gpu_bench.py put this folder
first on ``PYTHONPATH`` so that every interpreter they start, the benchmark's spawned workers and data-loader
processes included, runs without them. ``sys.modules[name] = None`` makes ``import name`` raise
``ModuleNotFoundError`` and ``importlib.util.find_spec(name)`` return None, which is what transformers'
``is_datasets_available()`` checks: the same answers as an interpreter where the package is missing.
"""

import os
import sys

for _name in filter(None, (n.strip() for n in os.environ.get("HIDE_PACKAGES", "").split(","))):
    sys.modules.setdefault(_name, None)
