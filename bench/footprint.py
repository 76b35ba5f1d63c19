"""Memory footprint of an idle node: RSS of a real `dcent node run` process.

Initialises a --dev home in a temporary directory, runs the node as its own process until it has
made a few blocks, then samples its resident set size (VmRSS) for a few seconds while it idles
along (empty blocks, capacity announcements). Prints figures and one JSON line:
    {"bench": "footprint", "rss_mb_max": ..., ...}
Goal (issue 4): <= 150 MB per idle node.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DCENT = [sys.executable, "-m", "node.cli.main"]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def height(home: Path) -> int:
    out = subprocess.run(
        [*DCENT, "chain", "head", "--home", str(home), "--json"], capture_output=True, text=True
    )
    return int(json.loads(out.stdout)["height"]) if out.returncode == 0 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        subprocess.run([*DCENT, "init", "--home", str(home), "--dev"], check=True, capture_output=True)
        config = home / "config.toml"
        config.write_text(config.read_text().replace("/tcp/26656", "/tcp/0"))
        node = subprocess.Popen([*DCENT, "node", "run", "--home", str(home)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while height(home) < 3:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise SystemExit("the node did not start making blocks")
                time.sleep(0.2)
            samples = []
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                samples.append(rss_kb(node.pid))
                time.sleep(0.5)
            final_height = height(home)
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=30)
    result = {
        "bench": "footprint",
        "rss_mb_max": round(max(samples) / 1024, 1),
        "rss_mb_last": round(samples[-1] / 1024, 1),
        "idle_seconds": args.seconds,
        "height": final_height,
        "goal_rss_mb": 150,
    }
    print(
        f"idle dev node: RSS {result['rss_mb_last']} MB (max {result['rss_mb_max']} MB over {args.seconds:.0f} s; goal <= 150 MB)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
