"""The lab mirror: a signed apt repo built locally, served on the gateway, used by a host."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from wizard.lab.mirror import build_apt_repo

needs_tools = pytest.mark.skipif(not (shutil.which("apt-ftparchive") and shutil.which("gpg")
                                      and shutil.which("dpkg-deb")),
                                 reason="apt-utils / gnupg / dpkg-deb missing")


def make_deb(tmp: Path, name="rw-lab-hello", version="1.0") -> Path:
    pkg = tmp / f"{name}-build"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: lab <lab@invalid>\n"
        "Description: lab mirror test package\n")
    (pkg / f"usr/share/{name}").mkdir(parents=True)
    (pkg / f"usr/share/{name}/hello").write_text("hello from the lab mirror\n")
    out = tmp / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(out)], check=True, capture_output=True)
    return out


@needs_tools
def test_repo_is_signed_and_verifies(tmp_path):
    repo = build_apt_repo(tmp_path / "repo", "bookworm/rw-lab/1.0", "main", "amd64",
                          [make_deb(tmp_path)], tmp_path / "keys")
    rel = tmp_path / "repo/dists/bookworm/rw-lab/1.0"
    assert "rw-lab-hello" in (rel / "main/binary-amd64/Packages").read_text()
    assert "Filename: pool/main/rw-lab-hello_1.0_all.deb" in (rel / "main/binary-amd64/Packages").read_text()
    ok = subprocess.run(["gpgv", "--keyring", repo["key_gpg"], str(rel / "InRelease")], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    # A tampered Release must fail verification (the check can fail).
    (rel / "Release").write_text((rel / "Release").read_text() + "X: tampered\n")
    bad = subprocess.run(["gpgv", "--keyring", repo["key_gpg"], str(rel / "Release.gpg"), str(rel / "Release")],
                         capture_output=True)
    assert bad.returncode != 0
    # The key is reused on a rebuild (hosts keep trusting it).
    again = build_apt_repo(tmp_path / "repo", "bookworm/rw-lab/1.0", "main", "amd64", [], tmp_path / "keys")
    assert again["fingerprint"] == repo["fingerprint"]


@needs_tools
@pytest.mark.lab
def test_host_installs_from_signed_mirror(lab, lab_hosts, tmp_path):
    root = tmp_path / "mirror"
    build_apt_repo(root / "lab-apt", "bookworm/rw-lab/1.0", "main", "amd64", [make_deb(tmp_path)], tmp_path / "keys")
    (root / "rocketchat/7.0.0").mkdir(parents=True)
    (root / "rocketchat/7.0.0/info").write_text('{"tag": "7.0.0"}\n')
    url = lab.start_mirror(root)
    assert url == f"http://{lab.gateway}:8080"
    req = urllib.request.Request(f"{url}/rocketchat/7.0.0/info", method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len('{"tag": "7.0.0"}\n')
    [h] = lab_hosts(1)
    script = f"""set -e
curl -fsS {url}/lab-apt/key.asc | gpg --dearmor -o /usr/share/keyrings/rw-lab.gpg
echo 'deb [ arch=amd64 signed-by=/usr/share/keyrings/rw-lab.gpg ] {url}/lab-apt bookworm/rw-lab/1.0 main' \
  > /etc/apt/sources.list.d/rw-lab.list
apt-get update -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=/etc/apt/sources.list.d
apt-get install -y rw-lab-hello
cat /usr/share/rw-lab-hello/hello
"""
    p = lab.exec(h.name, ["sh", "-c", script], timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "hello from the lab mirror" in p.stdout
    # Without the key apt must refuse the repository.
    p = lab.exec(h.name, ["sh", "-c", "sed -i 's#signed-by=[^ ]*#signed-by=/dev/null#' /etc/apt/sources.list.d/rw-lab.list"
                          " && apt-get update -o Dir::Etc::sourceparts=/etc/apt/sources.list.d"], timeout=60)
    assert p.returncode != 0 or "NO_PUBKEY" in p.stdout + p.stderr or "not signed" in p.stdout + p.stderr
    lab.stop_mirror()
    assert lab.mirror_status() is None
