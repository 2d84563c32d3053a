"""brfjax.hugepages: the CLIs re-run themselves once with glibc's huge-page tunable."""

import os
import subprocess
import sys

import pytest

from brfjax import hugepages

PROBE = """
import ctypes, os, sys
print("start", flush=True)
from brfjax.hugepages import reexec_with_hugepages
reexec_with_hugepages()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
size = 64 << 20
address = libc.malloc(size)
ctypes.memset(address, 1, size)  # touch every page
huge_kb = [int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages:")][0]
print("tunables", os.environ.get("GLIBC_TUNABLES"), "huge_kb", huge_kb, "argv", sys.argv[1:])
"""


def test_tunables_are_added_once_and_never_override_the_user():
    assert hugepages.tunables_with_hugepages(None) == "glibc.malloc.hugetlb=1"
    assert hugepages.tunables_with_hugepages("") == "glibc.malloc.hugetlb=1"
    assert hugepages.tunables_with_hugepages("glibc.malloc.arena_max=2") == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert hugepages.tunables_with_hugepages("glibc.malloc.hugetlb=0") is None


def run_probe(tmp_path, tunables):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    result = subprocess.run([sys.executable, "-X", "utf8", str(script), "--flag", "x"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.skipif(not hugepages.available(), reason="needs Linux with glibc >= 2.35")
def test_reexec_runs_the_same_command_once_with_huge_pages(tmp_path):
    words = run_probe(tmp_path, None)
    assert words.count("start") == 2  # the command ran again, once
    assert words[words.index("tunables") + 1] == "glibc.malloc.hugetlb=1"
    assert words[-2:] == ["['--flag',", "'x']"]  # same arguments
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
        mode = handle.read()
    if "[never]" not in mode:  # the kernel can give huge pages: the 64 MB block got them
        assert int(words[words.index("huge_kb") + 1]) >= 32 * 1024
    opted_out = run_probe(tmp_path, "glibc.malloc.hugetlb=0")
    assert opted_out.count("start") == 1
    assert opted_out[opted_out.index("tunables") + 1] == "glibc.malloc.hugetlb=0"
