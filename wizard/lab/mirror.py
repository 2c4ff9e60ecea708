"""A static HTTP mirror on the lab's public gateway, and a signed apt repository builder.

Lab hosts cannot reach the internet (only Debian's mirror through NAT), so whatever the
recipes download from MongoDB, Rocket.Chat or Node is served from a directory here:

    <root>/mongodb/...                      an apt repository (build_apt_repo)
    <root>/rocketchat/<version>/info, /download
    <root>/node/...

The server is a background process of its own session (it outlives `rocket-wizard lab up`)
and is stopped by `lab.down()`. Standalone when run as a script: `python3 mirror.py ROOT
HOST PORT STATEFILE`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

try:
    from .errors import LabError
except ImportError:  # run as a script
    LabError = RuntimeError  # type: ignore[misc,assignment]


# --- the server (runs in the background process) ---------------------------------------
class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map,
                      ".asc": "text/plain", ".gpg": "application/pgp-keys", ".deb": "application/vnd.debian.binary-package",
                      "": "application/octet-stream"}

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.address_string()} {fmt % args}\n")


def serve(root: str, host: str, port: int) -> None:
    httpd = ThreadingHTTPServer((host, port), partial(_Handler, directory=root))
    httpd.daemon_threads = True
    def on_term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        httpd.serve_forever(poll_interval=0.5)
    finally:
        httpd.server_close()


# --- control from the lab -----------------------------------------------------------------
def _state_file(lab) -> Path:
    return lab.workdir / "mirror.json"


def status(lab) -> dict | None:
    st = _read(_state_file(lab))
    if not st:
        return None
    st["running"] = _alive(st.get("pid"), str(_state_file(lab)))
    return st


def start(lab, root: Path, port: int = 8080) -> str:
    """Serve root at http://<gateway>:<port>/ ; returns that URL. Idempotent."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise LabError(f"mirror root {root} is not a directory")
    if not lab.net.bridges_exist():
        raise LabError(f"lab {lab.prefix} is not up: the mirror listens on its gateway {lab.gateway}")
    url = f"http://{lab.gateway}:{port}"
    st = status(lab)
    if st and st["running"]:
        if st["root"] == str(root) and st["port"] == port:
            return url
        stop(lab)
    sf = _state_file(lab)
    sf.parent.mkdir(parents=True, exist_ok=True)
    with open(lab.workdir / "mirror.log", "ab") as out:
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(root), lab.gateway, str(port), str(sf)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, cwd="/")
    sf.write_text(json.dumps({"pid": p.pid, "root": str(root), "port": port, "url": url}) + "\n")
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((lab.gateway, port), timeout=0.5):
                return url
        except OSError:
            pass
        if p.poll() is not None or time.monotonic() > deadline:
            log = (lab.workdir / "mirror.log").read_text(errors="replace")[-2000:]
            raise LabError(f"mirror did not start on {lab.gateway}:{port}:\n{log}")
        time.sleep(0.05)


def stop(lab) -> None:
    sf = _state_file(lab)
    st = _read(sf)
    if st and _alive(st.get("pid"), str(sf)):
        os.kill(st["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _alive(st["pid"], str(sf)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(st["pid"], str(sf)):
            os.kill(st["pid"], signal.SIGKILL)
    sf.unlink(missing_ok=True)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid, marker: str) -> bool:
    """pid runs and is our mirror (its command line names the state file)."""
    if not pid:
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return marker.encode() in cmd and stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- signed apt repository -----------------------------------------------------------------
KEY_UID = "rocket-wizard lab mirror <lab-mirror@rocket-wizard.invalid>"


def build_apt_repo(repo_dir, dist: str, component: str, arch: str, debs, key_dir) -> dict:
    """Build a signed apt repository (apt-ftparchive + a local gpg key) from .deb files.

    Layout as the real MongoDB repo: pool/<component>/*.deb, dists/<dist>/{Release,
    Release.gpg,InRelease}, dists/<dist>/<component>/binary-<arch>/Packages(.gz).
    The public key is exported as <repo_dir>/key.asc (armored, like MongoDB's
    server-X.asc) and key.gpg (binary keyring for signed-by). The key is generated once
    in key_dir and reused. Hosts use:
        deb [ arch=<arch> signed-by=/usr/share/keyrings/X.gpg ] <url> <dist> <component>
    Returns {"repo", "dist", "component", "arch", "key_asc", "key_gpg", "fingerprint"}.
    """
    for tool, pkg in (("apt-ftparchive", "apt-utils"), ("gpg", "gnupg")):
        if not shutil.which(tool):
            raise LabError(f"{tool} missing: apt-get install -y {pkg}")
    repo, keys = Path(repo_dir), Path(key_dir)
    pool = repo / "pool" / component
    pool.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        shutil.copy2(deb, pool / Path(deb).name)
    bindir = repo / "dists" / dist / component / f"binary-{arch}"
    bindir.mkdir(parents=True, exist_ok=True)
    # Paths in Packages are relative to the repo root: run from there.
    pk = _run(["apt-ftparchive", "packages", f"pool/{component}"], cwd=repo).stdout
    (bindir / "Packages").write_text(pk)
    _run(["gzip", "-9kf", str(bindir / "Packages")])
    rel_dir = repo / "dists" / dist
    for f in ("Release", "Release.gpg", "InRelease"):
        (rel_dir / f).unlink(missing_ok=True)
    rel = _run(["apt-ftparchive",
                "-o", "APT::FTPArchive::Release::Origin=rocket-wizard-lab",
                "-o", "APT::FTPArchive::Release::Label=rocket-wizard-lab",
                "-o", f"APT::FTPArchive::Release::Suite={dist}",
                "-o", f"APT::FTPArchive::Release::Codename={dist}",
                "-o", f"APT::FTPArchive::Release::Architectures={arch}",
                "-o", f"APT::FTPArchive::Release::Components={component}",
                "release", "."], cwd=rel_dir).stdout
    (rel_dir / "Release").write_text(rel)
    fpr = _ensure_key(keys)
    gpg = ["gpg", "--homedir", str(keys), "--batch", "--yes", "--pinentry-mode", "loopback",
           "--passphrase", "", "--local-user", fpr]
    _run(gpg + ["--armor", "--detach-sign", "-o", str(rel_dir / "Release.gpg"), str(rel_dir / "Release")])
    _run(gpg + ["--clearsign", "-o", str(rel_dir / "InRelease"), str(rel_dir / "Release")])
    asc = _run(["gpg", "--homedir", str(keys), "--batch", "--armor", "--export", fpr]).stdout
    (repo / "key.asc").write_text(asc)
    binkey = subprocess.run(["gpg", "--homedir", str(keys), "--batch", "--export", fpr],
                            capture_output=True, check=True).stdout
    (repo / "key.gpg").write_bytes(binkey)
    # gpg left an agent running for this homedir: stop it, nothing else needs it.
    subprocess.run(["gpgconf", "--homedir", str(keys), "--kill", "gpg-agent"], capture_output=True)
    return {"repo": str(repo), "dist": dist, "component": component, "arch": arch,
            "key_asc": str(repo / "key.asc"), "key_gpg": str(repo / "key.gpg"), "fingerprint": fpr}


def _ensure_key(keys: Path) -> str:
    keys.mkdir(parents=True, exist_ok=True)
    keys.chmod(0o700)
    fpr = _fingerprint(keys)
    if not fpr:
        _run(["gpg", "--homedir", str(keys), "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
              "--quick-generate-key", KEY_UID, "ed25519", "sign", "never"])
        fpr = _fingerprint(keys)
    if not fpr:
        raise LabError(f"gpg made no signing key in {keys}")
    return fpr


def _fingerprint(keys: Path) -> str | None:
    out = subprocess.run(["gpg", "--homedir", str(keys), "--batch", "--with-colons", "--list-secret-keys"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    return None


def _run(argv, cwd=None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
