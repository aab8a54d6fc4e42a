"""`make demo`: the whole story on the embedded emulator, as a user would run it.

It starts `reconciler emulator` on a free port (deployments take a few seconds to allocate), then
runs, against the example manifests and with placeholder secrets (the emulator calls no provider):

    reconciler validate
    reconciler plan
    reconciler apply --auto-approve      (waiting for the ELSER and E5 deployments)
    reconciler plan                      (no changes)
    reconciler status
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PLACEHOLDERS = {
    "ANTHROPIC_API_KEY": "sk-ant-placeholder",
    "OPENAI_API_KEY": "sk-placeholder",
    "COHERE_API_KEY": "placeholder",
}


def main() -> int:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", "--deploy-seconds", "4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline()
        print(line.strip())
        url = re.search(r"http://\S+", line)
        if url is None:
            return 1
        with tempfile.TemporaryDirectory() as scratch:
            env = {
                **os.environ,
                **PLACEHOLDERS,
                "ELASTICSEARCH_URL": url[0],
                "RECONCILER_STATE": f"file:{Path(scratch) / 'state.json'}",
                "RECONCILER_POLL_INTERVAL": "0.5",
            }
            for command in (
                ["validate"],
                ["plan"],
                ["apply", "--auto-approve"],
                ["plan"],
                ["status"],
            ):
                print(f"\n$ reconciler {' '.join(command)}", flush=True)
                result = subprocess.run([sys.executable, "-m", "reconciler", *command], env=env, check=False)  # noqa: S603
                if result.returncode != 0:
                    return result.returncode
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
