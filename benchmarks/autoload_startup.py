"""What the automatic registration costs a Python process that never imports OpenCLIP.

Runs ``PYTHON -c pass`` alternately with the registration hook on (the default) and switched off
(``OPEN_CLIP_SPARO_AUTOLOAD=0``, where the ``.pth`` line reads no module), and prints the median
CPU time (user + system) of each, their difference and its ratio to the start-up time, and the
median import time of the hook's module as ``-X importtime`` reports it; the target is a
difference under 5 ms. CPU time, not wall time: on a loaded machine wall time moves in scheduler
ticks of several milliseconds, more than the difference measured.
PYTHON must have the package installed (``make install`` does, into ``.venv``)::

    python -m benchmarks.autoload_startup [--python .venv/bin/python] [--runs 100]
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys

TARGET_MS = 5.0


def _env(switch: str) -> dict[str, str]:
    env = {**os.environ, "OPEN_CLIP_SPARO_AUTOLOAD": switch}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: from compiled bytecode
    return env


def start_up_cpu_seconds(python: str, switch: str) -> float:
    """User + system CPU time of one ``python -c pass``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([python, "-c", "pass"], env=_env(switch), check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def hook_import_seconds(python: str) -> float:
    """The hook module's cumulative import time in one start-up (``-X importtime``)."""
    command = [python, "-X", "importtime", "-c", "pass"]
    log = subprocess.run(command, env=_env("1"), capture_output=True, text=True).stderr
    match = re.search(r"\|\s*(\d+) \|\s*open_clip_sparo_autoload$", log, re.MULTILINE)
    if match is None:
        raise SystemExit(f"{python} does not load the registration hook: install the package.")
    return int(match.group(1)) * 1e-6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to start")
    parser.add_argument("--runs", type=int, default=100, help="starts per setting")
    args = parser.parse_args(argv)
    imports = statistics.median(hook_import_seconds(args.python) for _ in range(args.runs))
    timings: dict[str, list[float]] = {"1": [], "0": []}
    for run in range(args.runs):  # alternating, so that background load hits both alike
        for switch in ("1", "0") if run % 2 else ("0", "1"):
            timings[switch].append(start_up_cpu_seconds(args.python, switch))
    on, off = (statistics.median(timings[s]) * 1e3 for s in ("1", "0"))
    print(
        f"python -c pass, median CPU time of {args.runs}: hook on {on:.2f} ms, off {off:.2f} ms, "
        f"difference {on - off:.2f} ms ({(on - off) / off:.1%} of start-up; target < "
        f"{TARGET_MS} ms); the hook module's import: {imports * 1e3:.2f} ms"
    )
    return 0 if on - off < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
