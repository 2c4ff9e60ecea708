"""The Run screen driving the real engine: lab hosts booted by the lab provider,
the real hardening phase over SSH, Ctrl-C part-way, and a new start of the
wizard that offers to resume and finishes. Lab prefix "ru", 198.18.96.0/23."""

from __future__ import annotations

import os
import subprocess

import pytest

from screens.dialogs import ResumeDialog
from screens.run import RunScreen
from wizard.plan import plan_from_dict
from wizard.state import StateStore

pytestmark = pytest.mark.lab

PREFIX = os.environ.get("RW_TUI_LAB_PREFIX", "ru")
SUBNET = os.environ.get("RW_TUI_LAB_SUBNET", "198.18.96.0/23")


@pytest.fixture
def tui_lab():
    from wizard.lab.lab import Lab, LabError
    try:
        Lab.check()
    except LabError as e:
        pytest.skip(f"lab unavailable: {e}")
    lab = Lab(prefix=PREFIX, subnet=SUBNET)
    lab.down()
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


async def _wait(pilot, cond, limit: float) -> None:
    for _ in range(int(limit / 0.1)):
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out waiting")


async def test_run_screen_on_the_lab_ctrl_c_and_resume(tui_lab, state_dir, tmp_path):
    import recipes
    from screens.demo import FixedClock  # noqa: F401  (the real clock is used here)
    from screens.app import RocketWizardApp
    from wizard.deploy import Deployment
    from wizard.providers.lab import LabProvider

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    plan = plan_from_dict({"name": "rutui", "provider": "lab", "image": "debian-12-x64", "mongo_members": 1,
                           "domain": "chat.lab.test", "admin_email": "ops@lab.test", "ssh_key": str(key)})
    hardening = [p for p in recipes.PHASES if p.id == "hardening"]
    assert hardening, "the hardening recipe is needed for this test"
    made: list[Deployment] = []

    def factory(p):
        d = Deployment(p, provider=LabProvider(p.name, lab=tui_lab, ssh_public_key=p.public_key()),
                       phases=hardening)
        d.check_release = False      # one phase only: no Rocket.Chat release to check
        made.append(d)
        return d

    try:
        app = RocketWizardApp(make_deployment=factory, offer_resume=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(RunScreen(factory(plan)))
            screen = app.screen
            # past provisioning and first contact, part-way through hardening
            await _wait(pilot, lambda: screen.model.done >= 6 or not screen.running, 400)
            assert screen.running, screen.failure_text().plain
            await pilot.press("ctrl+c")
            await _wait(pilot, lambda: not screen.running, 120)
            assert screen.interrupted
        run = StateStore("rutui").state.last_run
        assert run.status == "interrupted"
        done_before = sum(run.done(k) for k in run.steps)
        assert done_before >= 1      # provisioning is not a recorded step; hardening began

        app2 = RocketWizardApp(make_deployment=factory, offer_resume=True)
        async with app2.run_test(size=(80, 24)) as pilot:
            await _wait(pilot, lambda: isinstance(app2.screen, ResumeDialog), 20)
            await pilot.press("r")
            await _wait(pilot, lambda: isinstance(app2.screen, RunScreen), 20)
            screen = app2.screen
            await _wait(pilot, lambda: not screen.running, 900)
            assert screen.ok, screen.failure_text().plain
            # the steps done before Ctrl-C were not run again
            assert screen.model.done_now <= screen.model.done - done_before
        run = StateStore("rutui").state.last_run
        assert run.status == "done" and run.resumed == 1
    finally:
        if made:
            made[-1].provider.destroy(progress=lambda m: None)
