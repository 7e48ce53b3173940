"""One distributed scheduler worker, for tests: `run_scheduler_app` with the `NGPU_*`
settings of the environment and short group timings, until SIGTERM or SIGINT.

Logs go to stderr as `<unix time> <logger> <level> <message>`, so a test can order the
"scheduler: leading" / "scheduler: standing by" lines of several workers.

Usage: python faust_child.py
"""

from __future__ import annotations

import asyncio
import logging
import signal

from services.scheduler.distributed import GroupTiming, run_scheduler_app
from services.settings import load_settings

TIMING = GroupTiming(session_timeout_s=6.0, heartbeat_interval_s=0.5, rebalance_timeout_s=20.0)


async def main() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await run_scheduler_app(load_settings(), stopping, timing=TIMING)
    logging.getLogger("faust_child").info("exited cleanly")


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(created).6f %(name)s %(levelname)s %(message)s"
    )
    asyncio.run(main())
