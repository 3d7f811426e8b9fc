"""The official Python MCP SDK (`pip install mcp`) against `mcp-pool gateway`.

Not run by CI. Start an echo server and a gateway, then run this script:

    mcp-pool serve-echo --port 9101 &
    mcp-pool gateway --listen 127.0.0.1:9102 --upstream echo=http://127.0.0.1:9101/mcp &
    python3 python_client.py http://127.0.0.1:9102/mcp/echo

For each connect mode of the SDK's `Client` ("auto": 2026-07-28 when the
server offers it, as the gateway does; "legacy": the initialize handshake),
three clients list the tools and call `echo` with steps at the same time,
each with a progress callback; each must receive the progress of its own
call only, in order. Exits 1 on any mismatch.
"""

import asyncio
import sys
from importlib.metadata import version

from mcp import Client

STEPS = 3


async def one_caller(url: str, mode: str, name: str) -> list[str]:
    problems: list[str] = []
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[object] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, total, message))

    async def on_log(params) -> None:
        logs.append(params.data)

    async with Client(url, mode=mode, logging_callback=on_log, log_level="info") as client:
        tools = await client.list_tools()
        names = {t.name for t in tools.tools}
        if "echo" not in names:
            problems.append(f"{name}: tools {names}")
        result = await client.call_tool(
            "echo",
            {"message": name, "delay_ms": 300, "steps": STEPS},
            progress_callback=on_progress,
        )
        text = "".join(getattr(c, "text", "") for c in result.content)
        if text != name:
            problems.append(f"{name}: result {text!r}")
        expected = [(float(i), float(STEPS), f"{name}: step {i} of {STEPS}") for i in range(1, STEPS + 1)]
        if progress != expected:
            problems.append(f"{name}: progress {progress}, expected {expected}")
        foreign = [d for d in logs if isinstance(d, dict) and d.get("message") != name]
        if foreign:
            problems.append(f"{name}: log lines of other calls: {foreign}")
        print(f"  {mode} {name}: {len(progress)} progress (own), {len(logs)} log lines, result {text!r}")
    return problems


async def main(url: str) -> int:
    print(f"mcp (Python SDK) {version('mcp')}")
    problems: list[str] = []
    for mode in ["auto", "legacy"]:
        found = await asyncio.gather(*(one_caller(url, mode, f"py-{mode}-{i}") for i in range(3)))
        problems += [p for ps in found for p in ps]
    for p in problems:
        print("MISMATCH", p)
    print("ok" if not problems else f"{len(problems)} mismatches")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
