"""Run the test phase and SIGKILL ourselves at the Nth step boundary (argv[4]).

Each run is a fresh process, as after a crash; the engine resumes from the state.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.core import steps_fixture as sf  # noqa: E402
from wizard import events as ev  # noqa: E402
from wizard.engine import Runner  # noqa: E402
from wizard.plan import plan_from_dict  # noqa: E402
from wizard.state import StateStore  # noqa: E402

name, tmp, key, kill_at = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
plan = plan_from_dict({"name": name, "provider": "lab", "domain": "chat.lab.test", "mongo_members": 1,
                       "admin_email": "ops@lab.test", "ssh_key": key})
seen = 0


def emit(e):
    global seen
    if isinstance(e, ev.StepFinished):
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


async def main():
    with StateStore(plan.name) as store:
        r = Runner(plan, store, [sf.phase(sf.Append("one"), sf.Touch("t"), sf.Append("two"), sf.Append("three"))],
                   emit=emit)
        r._test_dir = str(tmp / "hosts")
        res = await r.run()
        sys.exit(0 if res.ok else 1)

asyncio.run(main())
