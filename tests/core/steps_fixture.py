"""Steps for engine tests: real files in a folder per host, read back as facts.

``Touch`` is idempotent (its check reads the file); ``Append`` has a side effect
that must never repeat once the state records it as done (its check is blind on
purpose), so a resumed run that repeats a done step shows up as a doubled line.
"""

from __future__ import annotations

import shlex

from wizard.engine import Change, NoChange, Phase, Skip, Step
from wizard.ops import Cmd, Put


def base(ctx) -> str:
    return f"{ctx.plan.mirrors.node.split('://', 1)[1]}/{ctx.host.name}" if False else ctx._runner._test_dir + "/" + ctx.host.name


class Touch(Step):
    roles = ("mongo", "web")

    def __init__(self, id: str, content: str = "x"):
        self.id = id  # type: ignore[misc]
        self.title = f"file {id}"  # type: ignore[misc]
        self.content = content

    def fact_commands(self, ctx):
        return {f"file_{self.id}": f"cat {shlex.quote(base(ctx) + '/' + self.id)} 2>/dev/null || echo MISSING"}

    def check(self, ctx):
        if ctx.facts[f"file_{self.id}"] == self.content:
            return NoChange(f"{self.id} already holds the content")
        return Change(f"write {self.id}", [Put(f"{base(ctx)}/{self.id}", self.content, 0o600, "root", "root")])


class Append(Step):
    roles = ("mongo", "web")

    def __init__(self, id: str):
        self.id = id  # type: ignore[misc]
        self.title = f"append {id}"  # type: ignore[misc]

    def check(self, ctx):
        return Change(f"append a line for {self.id}", [Cmd(f"mkdir -p {base(ctx)} && echo {self.id} >> {base(ctx)}/journal")])


class Fail(Step):
    roles = ("mongo", "web")
    id = "t.fail"
    title = "a step that fails until a flag file exists"

    def fact_commands(self, ctx):
        return {"flag": f"test -e {base(ctx)}/flag && echo yes || echo no"}

    def check(self, ctx):
        if ctx.facts["flag"] == "yes":
            return NoChange("flag present")
        return Change("fail", [Cmd("echo 'E: it broke' >&2; exit 3")])


class Secretive(Step):
    roles = ("mongo",)
    id = "t.secret"
    title = "a command with a secret"

    def check(self, ctx):
        pw = ctx.secrets.get_or_create("test_pw")
        return Change("use a secret", [Cmd(f"echo using {pw}", secrets=(pw,)),
                                       Put(f"{base(ctx)}/pw", pw, 0o600, secret=True)])


class OnlyInVM(Step):
    roles = ("mongo", "web")
    id = "t.vm"
    title = "machine-wide setting"

    def check(self, ctx):
        return Skip("in a container") if ctx.in_container else NoChange("fine")


def phase(*steps) -> Phase:
    return Phase("t", "test phase", list(steps))
