"""The clock one core of this machine really runs at, for scaling figures between machines (see
BENCHMARKS.md, "On a Raspberry Pi"): a chain of dependent integer adds, one per cycle on any modern
core, compiled with gcc (installed by scripts/setup.sh) and timed; the best of 5 runs.

    .venv/bin/python bench/cpu_clock.py
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as c

SOURCE = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b;
    long x = 0, n = 500000000L;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
#if defined(__x86_64__)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
#elif defined(__aarch64__)
        __asm__ volatile("add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1" : "+r"(x));
#else
#error "x86_64 or aarch64 only"
#endif
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.4f\n", (double)x / s / 1e9);
    return 0;
}
"""


def main() -> None:
    if shutil.which("gcc") is None:
        sys.exit("gcc is missing: bash scripts/setup.sh installs it")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "clock.c", Path(tmp) / "clock"
        src.write_text(SOURCE)
        subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True)
        runs = [float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)
                for _ in range(5)]
    print(c.header("CPU clock", "bench/cpu_clock.py"))
    print(f"clock    {max(runs):.2f} GHz effective on one core, {platform.machine()} "
          f"(dependent adds per second; 5 runs: {', '.join(f'{r:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()
