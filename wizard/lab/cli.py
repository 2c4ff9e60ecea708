"""`rocket-wizard lab up|down|status`: the lab from a terminal (see docs/lab.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .lab import DEFAULT_PREFIX, DEFAULT_SUBNET, Lab, LabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rocket-wizard lab",
                                description="Local Debian 12 test hosts (systemd-nspawn); needs root.")
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"short name of the lab: interfaces, namespaces (default {DEFAULT_PREFIX})")
    common.add_argument("--subnet", default=DEFAULT_SUBNET,
                        help=f"a /23 in 198.18.0.0/15: public /24 + private /24 (default {DEFAULT_SUBNET})")
    up = sub.add_parser("up", parents=[common], help="build/reuse the base image, bridges, NAT")
    up.add_argument("--mirror", metavar="DIR", help="serve DIR over HTTP on the lab gateway")
    up.add_argument("--mirror-port", type=int, default=8080)
    sub.add_parser("down", parents=[common], help="remove the lab's hosts, network, NAT and files")
    st = sub.add_parser("status", parents=[common], help="what exists of the lab")
    st.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:
        argv = argv[1:]
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        lab = Lab(prefix=args.prefix, subnet=args.subnet)
        if args.cmd == "up":
            lab.up(mirror_root=args.mirror, mirror_port=args.mirror_port)
            print(f"lab {lab.prefix} is up: public {lab.net.public} (gateway {lab.gateway}, NAT), "
                  f"private {lab.net.private}")
            if args.mirror:
                print(f"mirror: http://{lab.gateway}:{args.mirror_port}/ serves {args.mirror}")
            print(f'plan: provider = "lab"  (hosts get {lab.net.public_ip(10)}, {lab.net.public_ip(11)}, ...)')
            print(f"tear down with: rocket-wizard lab down --prefix {lab.prefix}")
        elif args.cmd == "down":
            n = len(lab.hosts())
            lab.down()
            print(f"lab {lab.prefix} is down ({n} host(s) removed)")
        else:
            st = lab.status()
            if args.json:
                print(json.dumps(st, indent=1))
            else:
                _print_status(st)
        return 0
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted; run `rocket-wizard lab down` to clean up", file=sys.stderr)
        return 130


def _print_status(st: dict) -> None:
    print(f"lab {st['prefix']} ({st['subnet']}): {'up' if st['up'] else 'down'}")
    print(f"  public {st['public']} gateway {st['gateway']}; private {st['private']}")
    print(f"  bridges: {', '.join(st['bridges']) or 'none'}; NAT rules: {st['nat_rules']}")
    print(f"  base image: {st['image']} ({'cached' if st['image_cached'] else 'not built yet'})")
    m = st["mirror"]
    if m:
        print(f"  mirror: {m['url']} -> {m['root']} ({'running' if m['running'] else 'not running'})")
    for h in st["hosts"]:
        state = f"running (pid {h['pid']}, boot {h['boots']})" if h["running"] else "stopped"
        print(f"  host {h['name']:<20} {h['public_ip']:<15} {h['private_ip']:<15} {state}")
    if not st["hosts"]:
        print("  no hosts")


if __name__ == "__main__":
    sys.exit(main())
