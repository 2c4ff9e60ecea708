"""The headless command line: plan, apply, status, destroy, lab; no arguments opens the TUI.

Exit codes: 0 done, 1 a step failed, 2 bad input, 130 interrupted (state kept, rerun resumes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from . import events as ev
from .plan import Plan, PlanError, load_plan, save_plan
from .state import LockedError, StateError, StateStore, state_root

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class Printer:
    """Live progress on a terminal, plain timestamped lines when piped."""

    def __init__(self, out: TextIO, verbose: bool = False, logfile: Path | None = None):
        self.out = out
        self.tty = out.isatty()
        self.verbose = verbose
        self._log = open(logfile, "a", encoding="utf-8") if logfile else None
        self._progress = False

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.tty else text

    def _line(self, text: str) -> None:
        if self._progress:
            self.out.write("\r\033[K")
            self._progress = False
        stamp = time.strftime("%H:%M:%S")
        self.out.write(f"{stamp} {text}\n")
        self.out.flush()

    def __call__(self, e: ev.Event) -> None:
        if self._log is not None and isinstance(e, ev.LogLine):
            self._log.write(f"{time.strftime('%H:%M:%S', time.localtime(e.at))} [{e.host or '-'}] {e.text}\n")
            self._log.flush()
        if isinstance(e, ev.RunStarted):
            what = "dry run" if e.dry_run else ("resuming run" if e.resumed else "run")
            self._line(self._c("1", f"{what} {e.run_id}: phases {', '.join(e.phases) or '-'}"))
        elif isinstance(e, ev.PhaseStarted):
            self._line(self._c("1;36", f"== {e.title} ({len(e.hosts)} hosts)"))
        elif isinstance(e, ev.StepFinished):
            mark = {"ok": ("32", "ok"), "changed": ("33", "changed"), "skipped": ("2", "skipped"),
                    "failed": ("1;31", "FAILED")}[e.status]
            self._line(f"{e.host:<8} {self._c(mark[0], f'{mark[1]:<8}')} {e.step:<28} {e.reason} "
                       + self._c("2", f"({e.elapsed:.1f}s)"))
            if e.status == "failed" and (e.command or e.output):
                for line in (e.output or "").splitlines()[-15:]:
                    self._line(self._c("31", f"         | {line}"))
        elif isinstance(e, ev.Progress):
            text = f"{e.host or 'wizard'}: {e.text}"
            if self.tty:
                self.out.write("\r\033[K" + self._c("2", text[:200]))
                self.out.flush()
                self._progress = True
            else:
                self._line(text)
        elif isinstance(e, ev.LogLine) and self.verbose:
            self._line(self._c("2", f"{e.host or '-':<8} {e.text}"))
        elif isinstance(e, ev.ResourceRecorded):
            self._line(f"recorded {e.kind} {e.id} ({e.name})")
        elif isinstance(e, ev.RunFinished):
            rt = ", ".join(f"{h} {n}" for h, n in sorted(e.round_trips.items())) or "none"
            state = "interrupted" if e.interrupted else ("done" if e.ok else "FAILED")
            self._line(self._c("1", f"{state}: {e.changed} changed, {e.failed} failed in {e.elapsed:.1f}s; "
                                    f"round trips: {rt}"))


# ---------------------------------------------------------------- commands


def _load(args, check_files: bool = True) -> Plan:
    if args.answers:
        return load_plan(args.answers, check_files)
    if args.deployment:
        saved = state_root() / args.deployment / "plan.toml"
        if not saved.is_file():
            raise PlanError(f"deployment {args.deployment!r}: no saved plan in {saved.parent}")
        return load_plan(saved, check_files)
    raise PlanError("give --answers FILE (or --deployment NAME for one applied before)")


def _token_getter():
    try:
        from .token import token_getter
    except ImportError:
        return None
    return token_getter(interactive=sys.stdin.isatty())


def cmd_plan(args, out: TextIO) -> int:
    from .deploy import Deployment

    plan = _load(args, check_files=False)
    d = Deployment(plan, token=_token_getter())
    prices = None
    if plan.provider == "digitalocean" and os.environ.get("DIGITALOCEAN_ACCESS_TOKEN") and not args.offline:
        try:
            prices = d.provider.prices()
        except Exception as e:       # the plan must print even when the API is unreachable
            out.write(f"(live prices unavailable: {e}; using the built-in table)\n")
    r = d.review(prices)
    out.write(render_review(plan, r))
    for warning in plan.missing_files():
        out.write(f"  warning: {warning}\n")
    return EXIT_OK


def render_review(plan: Plan, r) -> str:
    lines = [f"Deployment {plan.name!r} on {plan.provider} ({plan.region}, {plan.image})", ""]
    lines.append(f"  {'host':<8} {'role':<6} {'size':<14} {'USD/month':>9}  installs")
    for h in r.hosts:
        first, *rest = h.installs
        lines.append(f"  {h.name:<8} {h.role:<6} {h.size:<14} {h.price_monthly:>9.2f}  {first}")
        for extra in rest:
            lines.append(f"  {'':<8} {'':<6} {'':<14} {'':>9}  {extra}")
    lines.append("")
    lines.append(f"  droplets {r.droplets_monthly:>10.2f} USD/month")
    if r.backups_monthly:
        lines.append(f"  backups  {r.backups_monthly:>10.2f} USD/month ({plan.backups})")
    lines.append(f"  total    {r.total_monthly:>10.2f} USD/month, {r.total_monthly * 12:.2f} USD/year")
    src = "live prices from DigitalOcean" if r.priced_live else f"built-in price table checked {r.prices_checked}"
    lines.append(f"  ({src})")
    lines.append(f"  URL: {r.url}")
    for n in r.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines) + "\n"


def _confirm(question: str, args) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise PlanError("not a terminal and --yes not given: refusing to create or delete anything unattended")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_apply(args, out: TextIO) -> int:
    from .deploy import Deployment

    plan = _load(args)
    store = StateStore(plan.name)
    with store:
        if store.notice:
            out.write(store.notice + "\n")
        d = Deployment(plan, store, token=_token_getter())
        unfinished = store.state.unfinished_run()
        if unfinished and not args.fresh:
            done = sum(1 for s in unfinished.steps.values() if s.status in ("ok", "changed", "skipped"))
            out.write(f"resuming the unfinished run {unfinished.id} ({done} steps already done)\n")
        else:
            out.write(render_review(plan, d.review()))
            if not _confirm("Create and configure these hosts?", args):
                out.write("nothing done\n")
                return EXIT_OK
        save_plan(plan, store.dir / "plan.toml")
        logfile = store.dir / "logs" / f"apply-{time.strftime('%Y%m%d-%H%M%S')}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        printer = Printer(out, args.verbose, logfile)
        result = asyncio.run(d.apply(printer, resume=not args.fresh))
        if not result.ok:
            if any(step == "tls.dns" for _, step, _ in result.failures):
                _offer_a_record(d, args, out)
            return EXIT_FAILED
        out.write(f"done: https://{plan.domain}\n")
        creds = d.admin_credentials_once()
        if creds:
            out.write(f"admin: {creds[0]} / {creds[1]}   (shown once; kept as rocketchat_admin_password "
                      f"in {store.secrets.path})\n")
        else:
            out.write(f"admin: {plan.admin_username}; password: rocketchat_admin_password in {store.secrets.path}\n")
    return EXIT_OK


def _offer_a_record(d, args, out: TextIO) -> None:
    """The domain does not point at the web host: create the A record when DigitalOcean hosts it."""
    try:
        offer = d.dns_offer()
    except Exception as e:        # the offer is a convenience; the failure line already says what to do
        out.write(f"(could not look up the account's domains: {e})\n")
        return
    if offer is None:
        return
    name = offer.zone if offer.record == "@" else f"{offer.record}.{offer.zone}"
    if args.yes or not sys.stdin.isatty():
        out.write(f"{name} lives in your DigitalOcean account: rerun interactively to create its A record, "
                  f"or create {name} A {offer.address} yourself\n")
        return
    if _confirm(f"{name} lives in your DigitalOcean account. Create the A record {name} -> {offer.address}?", args):
        d.provider.ensure_a_record(offer.zone, offer.record, offer.address)
        out.write(f"created {name} A {offer.address}; run apply again once it resolves\n")


def cmd_status(args, out: TextIO) -> int:
    from .deploy import Deployment

    plan = _load(args)
    d = Deployment(plan)
    st = asyncio.run(d.status())
    out.write(f"{'host':<8} {'role':<6} {'up':<4} {'load':>5} {'mem%':>5} {'disk%':>6}\n")
    for h in st.hosts:
        if h.reachable:
            out.write(f"{h.name:<8} {h.role:<6} {'yes':<4} {h.load or 0:>5.2f} {h.mem_used_pct or 0:>5.1f} "
                      f"{h.disk_used_pct or 0:>6.1f}\n")
        else:
            out.write(f"{h.name:<8} {h.role:<6} {'no':<4} {h.error}\n")
    for m in st.mongo:
        lag = f"{m.lag_s:.0f}s" if m.lag_s is not None else "-"
        out.write(f"mongo {m.name:<24} {m.state:<10} health {m.health} lag {lag}\n")
    for a in st.apps:
        out.write(f"app {a.host}:{a.port} {'healthy' if a.healthy else 'DOWN'} {a.version}\n")
    if st.cert_days_left is not None:
        out.write(f"certificate: {st.cert_days_left} days left\n")
    out.write(f"cost: {st.monthly_cost:.2f} USD/month\n")
    bad = any(not h.reachable for h in st.hosts if h.error != "not created yet")
    return EXIT_FAILED if bad else EXIT_OK


def cmd_destroy(args, out: TextIO) -> int:
    from .deploy import Deployment

    plan = _load(args)
    store = StateStore(plan.name)
    with store:
        d = Deployment(plan, store, token=_token_getter())
        machines = d.provider.list_hosts()
        if not machines:
            out.write(f"nothing carries the tag of deployment {plan.name!r}\n")
            return EXIT_OK
        for m in machines:
            out.write(f"  {m.name:<24} {m.id:<12} {m.public_ip or '-':<16} {m.status}\n")
        if not _confirm(f"Delete these {len(machines)} hosts?", args):
            out.write("nothing deleted\n")
            return EXIT_OK
        gone = d.destroy(progress=lambda t: out.write(t + "\n"))
        out.write(f"deleted {len(gone)} hosts\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rocket-wizard", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    for name, helptext in [("plan", "show what would be created and what it costs"),
                           ("apply", "create and configure (resumes an unfinished run)"),
                           ("status", "health of a deployment"),
                           ("destroy", "delete every host of a deployment")]:
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--answers", "-a", type=Path, help="TOML answers file")
        sp.add_argument("--deployment", "-d", help="a deployment applied before (its saved plan)")
        if name in ("apply", "destroy"):
            sp.add_argument("--yes", "-y", action="store_true", help="do not ask (unattended runs)")
        if name == "apply":
            sp.add_argument("--fresh", action="store_true", help="start a new run instead of resuming")
            sp.add_argument("--verbose", "-v", action="store_true", help="print every command's output")
        if name == "plan":
            sp.add_argument("--offline", action="store_true", help="never ask the API for prices")
    lab = sub.add_parser("lab", help="local rehearsal hosts (root, Linux, systemd-container)")
    lab.add_argument("rest", nargs=argparse.REMAINDER)
    tui = sub.add_parser("tui", help="the interactive wizard (the default)")
    tui.add_argument("--answers", "-a", type=Path, help="pre-fill the plan from an answers file")
    tui.add_argument("--deployment", "-d", help="open a deployment (resume it or show its status)")
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if args.cmd in (None, "tui"):
            from screens.app import main as tui_main
            return tui_main(answers=getattr(args, "answers", None), deployment=getattr(args, "deployment", None))
        if args.cmd == "lab":
            from .lab.cli import main as lab_main
            return lab_main(args.rest)
        return {"plan": cmd_plan, "apply": cmd_apply, "status": cmd_status, "destroy": cmd_destroy}[args.cmd](args, out)
    except PlanError as e:
        sys.stderr.write(f"rocket-wizard: {e}\n")
        return EXIT_INPUT
    except LockedError as e:
        sys.stderr.write(f"rocket-wizard: {e}\n")
        return EXIT_INPUT
    except StateError as e:
        sys.stderr.write(f"rocket-wizard: {e}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("\nrocket-wizard: interrupted; the state is saved and the next apply resumes\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:           # `rocket-wizard plan | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:       # ProviderError and friends: one line, no traceback
        from .providers.base import ProviderError
        from .ssh import SSHError
        if isinstance(e, (ProviderError, SSHError)):
            sys.stderr.write(f"rocket-wizard: {e}\n")
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
