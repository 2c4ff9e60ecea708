"""Create the hosts of a production plan through DigitalOceanProvider (a wizard run, for the kill test).

    DIGITALOCEAN_ACCESS_TOKEN=... DIGITALOCEAN_END_POINT=http://127.0.0.1:PORT/v2/ \
        python tests/digitalocean/do_driver.py DEPLOYMENT PUBLIC_KEY_FILE

Prints `RESOURCE droplet <id> <name>` the moment each create call returns, then `DONE`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wizard.providers.base import HostSpec
from wizard.providers.digitalocean import DigitalOceanProvider
from wizard.token import token_getter


def main() -> None:
    deployment, key_file = sys.argv[1], Path(sys.argv[2])
    provider = DigitalOceanProvider(deployment, token=token_getter(), region="nyc3", image="debian-12-x64",
                                    ssh_public_key=key_file.read_text(), poll_interval=0.3, active_timeout=60)
    specs = [HostSpec(f"mongo{i}", "mongo", "s-1vcpu-2gb", "#cloud-config\n{}\n") for i in (1, 2, 3)]
    specs.append(HostSpec("web1", "web", "s-2vcpu-4gb", "#cloud-config\n{}\n"))

    def on_resource(kind: str, rid: str, data: dict) -> None:
        print("RESOURCE", kind, rid, data.get("name"), flush=True)

    machines = provider.ensure_hosts(specs, on_resource=on_resource, progress=lambda m: print("PROGRESS", m, flush=True))
    print("DONE", " ".join(m.id for m in machines), flush=True)


if __name__ == "__main__":
    main()
