"""Record the hardening phase's facts from a lab host into data/facts/<name>.json.

    sudo python3 tests/hardening/record_facts.py rh other1 debian12-fresh

The unit tests replay these files through each step's check (pyinfra-style: facts
in, outcome and ops out). Run as root on a machine with the lab up.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from recipes import hardening  # noqa: E402
from wizard.engine import BASE_FACTS, facts_script, parse_facts  # noqa: E402
from wizard.lab.lab import Lab  # noqa: E402
from wizard.plan import Plan  # noqa: E402


def commands(plan: Plan) -> dict[str, str]:
    class _Ctx:
        pass
    ctx = _Ctx()
    ctx.plan = plan          # fact commands read only the plan
    cmds = dict(BASE_FACTS)
    for s in hardening.PHASE.steps:
        cmds.update(s.fact_commands(ctx))   # type: ignore[arg-type]
    return cmds


def main(prefix: str, host: str, name: str, subnet: str = "198.18.80.0/23") -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        key = Path(d) / "k"
        key.write_text("x")
        key.with_name("k.pub").write_text("ssh-ed25519 AAAA x\n")
        plan = Plan.model_validate(dict(name="rec", provider="lab", domain="chat.lab.test",
                                        admin_email="ops@lab.test", ssh_key=str(key)))
        cmds = commands(plan)
    lab = Lab(prefix=prefix, subnet=subnet)
    p = lab.exec(host, ["sh", "-c", facts_script(cmds)], timeout=60)
    facts, _ = parse_facts(p.stdout)
    # The lab's addresses, so cases replaying these facts use the same inventory.
    inventory = {h.name: {"public_ip": h.public_ip, "private_ip": h.private_ip} for h in lab.hosts()}
    out = Path(__file__).with_name("data") / "facts" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"recorded": time.strftime("%Y-%m-%d"), "host": host,
                               "source": f"lab {prefix}, Debian 12 systemd-nspawn host",
                               "inventory": inventory, "facts": facts}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({len(facts)} facts)")


if __name__ == "__main__":
    main(*sys.argv[1:])
