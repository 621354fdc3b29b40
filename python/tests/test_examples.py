"""The Python examples run (on the CPU), so that they cannot rot: each one checks its own results
and exits non-zero on a mismatch."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import wideattn

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def run_example(name, *args):
    env = dict(os.environ)
    # The wideattn this test imported (source tree or installed), whatever the working directory.
    package_parent = str(pathlib.Path(wideattn.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_serving_loop_on_the_cpu():
    pytest.importorskip("torch")
    result = run_example("serving_loop.py", "--device", "cpu", "--steps", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mixed batch: 45 tokens over 6 sequences" in result.stdout, result.stdout
    assert "6 decode steps (run() per step)" in result.stdout, result.stdout
    assert "7 checks against the contiguous cache on cpu float32" in result.stdout, result.stdout
