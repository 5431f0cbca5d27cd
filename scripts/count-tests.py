#!/usr/bin/env python3
"""Print "N passed, N failed" over the meson test logs of the given build
directories. Skipped, timed-out and missing runs count as failed. Exits 1
when anything failed or a build directory has no test log."""
import json
import os
import sys

passed = failed = 0
for build_dir in sys.argv[1:]:
    log = os.path.join(build_dir, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        failed += 1  # the build itself failed: its suite did not run
        continue
    with open(log) as f:
        for line in f:
            if line.strip():
                result = json.loads(line)["result"]
                if result in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                else:
                    failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
