"""Provision a plan through the DigitalOcean double; SIGKILL ourselves at a chosen point.

argv: answers-file kill-spec, where kill-spec is
  "before-record:N"  die inside the Nth droplet callback, before the state write
                     (the process died right after the create call returned)
  "after-record:N"   die once the Nth droplet is in the state
  "none"             run to the end
The first SSH contact is not part of this test (the double's droplets have no sshd):
it is replaced by a no-op so that only provisioning and the state are exercised.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from wizard import deploy  # noqa: E402
from wizard import events as ev  # noqa: E402
from wizard.plan import load_plan  # noqa: E402
from wizard.providers.digitalocean import DigitalOceanProvider, RetryPolicy  # noqa: E402
from wizard.state import StateStore  # noqa: E402

answers, spec = sys.argv[1], sys.argv[2]
mode, _, nth = spec.partition(":")
nth = int(nth or 0)
plan = load_plan(answers)
seen = {"cb": 0, "rec": 0}


class Provider(DigitalOceanProvider):
    def ensure_hosts(self, specs, *, on_resource, progress):
        def cb(kind, id, data):
            if kind == "droplet":
                seen["cb"] += 1
                if mode == "before-record" and seen["cb"] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
            on_resource(kind, id, data)
        return super().ensure_hosts(specs, on_resource=cb, progress=progress)


def emit(e):
    if isinstance(e, ev.ResourceRecorded) and e.kind == "droplet":
        seen["rec"] += 1
        if mode == "after-record" and seen["rec"] == nth:
            os.kill(os.getpid(), signal.SIGKILL)


async def no_contact(self, runner, host):
    return True

deploy.Deployment._first_contact = no_contact


async def main():
    with StateStore(plan.name) as store:
        provider = Provider.for_plan(plan, token=os.environ["RW_TEST_TOKEN"],
                                     policy=RetryPolicy(budget=10, base_delay=0.05, max_delay=0.2),
                                     poll_interval=0.05, active_timeout=30)
        d = deploy.Deployment(plan, store, provider=provider, phases=[])
        d.check_release = False
        res = await d.apply(emit)
        sys.exit(0 if res.ok else 1)

asyncio.run(main())
