"""A build killed half way leaves bind mounts in its tree: cleanup must never delete through them."""

from __future__ import annotations

import os
import subprocess

import pytest

from wizard.lab import image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount)")


def test_clean_stale_unmounts_and_keeps_what_is_behind_a_mount(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    (outside).mkdir(parents=True)
    (outside / "precious").write_text("must survive\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = cache / f".build-{dead.pid}"
    (stale / "root/dev").mkdir(parents=True)
    (stale / "root/etc").mkdir()
    live = cache / f".build-{os.getpid()}"
    live.mkdir()
    part = cache / f"base-abc.tar.part{dead.pid}"
    part.write_text("half")
    subprocess.run(["mount", "--bind", str(outside), str(stale / "root/dev")], check=True)
    try:
        monkeypatch.setattr(image, "CACHE_DIR", cache)
        image.clean_stale()
    finally:
        if str(stale / "root/dev") in image.mounted():
            subprocess.run(["umount", "-l", str(stale / "root/dev")])
    assert not stale.exists()
    assert not part.exists()
    assert live.exists()  # its builder is alive
    assert (outside / "precious").read_text() == "must survive\n"
