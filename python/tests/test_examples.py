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


def test_context_parallel_over_two_cpu_processes():
    pytest.importorskip("torch")
    pytest.importorskip("torch.distributed")
    env = dict(os.environ)
    package_parent = str(pathlib.Path(wideattn.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(EXAMPLES / "context_parallel.py"), "--small", "--repeat", "2"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "decode b3 x KV 192 (8/2, d=64, float32): 2 ranks" in result.stdout, result.stdout
    assert "prefill 128 tokens by ring (8/2, d=64, float32): 2 ranks" in result.stdout, result.stdout
    assert "prefill 128 tokens by all-gather (8/2, d=64, float32): 2 ranks" in result.stdout, result.stdout
    assert "ok: worst |error|" in result.stdout, result.stdout
