"""The lab's base image: Debian 12 (bookworm) minbase with systemd, sshd and cloud-init.

Built once with debootstrap, cached as tar.zst under CACHE_DIR and named by a hash
of the recipe below, so changing the recipe rebuilds it. Several processes (other
helpers, parallel test sessions) share the cache: builds and extractions are
serialised with a file lock and published with an atomic rename.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import LabError

CACHE_DIR = Path(os.environ.get("RW_LAB_CACHE", "/var/cache/rocket-wizard/lab"))

SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"

# Installed by debootstrap itself (it resolves their dependencies).
INCLUDE = [
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "sudo",
    "iproute2", "ca-certificates", "curl", "gnupg", "procps", "python3", "kmod", "udev",
    "xz-utils",  # on every cloud image; Node's release tarballs are .tar.xz
]
# Installed with apt inside the fresh tree: cloud-init's dependency tree is large and
# debootstrap's resolver is weaker than apt's.
EXTRA = ["cloud-init", "python3-systemd"]

# cloud-init settings that avoid every failure lab.md measured: no network probing
# (NoCloud seed is on disk), no network config (the lab configures eth0/eth1 from
# outside; a DHCP config stalls boot for 120 s), a locale that exists on minbase.
CLOUD_CFG = """\
# rocket-wizard lab: the seed is on disk; the lab configures networking from outside.
datasource_list: [ NoCloud, None ]
network: {config: disabled}
locale: C.UTF-8
# Like DigitalOcean's images: the droplet's SSH keys also let root log in.
disable_root: false
"""

ETC_HOSTS = """\
127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""

# Bumped when the build steps below change in a way the inputs do not show.
RECIPE_VERSION = 4


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The machine's Debian mirror (the only one reachable here), from its deb822 sources."""
    try:
        text = sources.read_text()
    except OSError:
        return FALLBACK_MIRROR
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, v in (line.split(":", 1) for line in stanza.splitlines()
                         if ":" in line and not line.lstrip().startswith("#"))
        )
        if "bookworm" in fields.get("suites", "").split() and fields.get("uris"):
            return fields["uris"].split()[0].rstrip("/")
    return FALLBACK_MIRROR


def recipe(mirror: str | None = None) -> dict:
    mirror = mirror or debian_mirror()
    return {
        "version": RECIPE_VERSION, "suite": SUITE, "variant": "minbase", "mirror": mirror,
        "include": INCLUDE, "extra": EXTRA, "cloud_cfg": CLOUD_CFG, "hosts": ETC_HOSTS, "sources": _sources(mirror),
    }


def recipe_hash(mirror: str | None = None) -> str:
    blob = json.dumps(recipe(mirror), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _sources(mirror: str) -> str:
    security = mirror.replace("/debian", "/debian-security") if mirror.endswith("/debian") else mirror
    return (
        "Types: deb\n"
        f"URIs: {mirror}\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        f"URIs: {security}\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tarball_path(h: str | None = None) -> Path:
    return CACHE_DIR / f"base-{h or recipe_hash()}.tar.zst"


def ensure_tarball(log=print) -> Path:
    """Return the cached tarball of the current recipe, building it if missing."""
    h = recipe_hash()
    tar = tarball_path(h)
    if tar.exists():
        return tar
    with file_lock(CACHE_DIR / "build.lock"):
        if tar.exists():  # another process built it while we waited
            return tar
        log(f"lab: building base image {tar.name} (debootstrap, about 90 s; once per recipe)")
        t0 = time.monotonic()
        _build(tar, recipe())
        log(f"lab: base image built in {time.monotonic() - t0:.0f} s")
    return tar


def ensure_rootfs(log=print) -> Path:
    """The extracted base image, shared read-only by every lab as the overlay lower dir.

    Never modify it: live overlay mounts of several labs may sit on it."""
    tar = ensure_tarball(log)
    h = tar.name[len("base-"):-len(".tar.zst")]
    root = CACHE_DIR / f"rootfs-{h}"
    if (root / "etc" / "os-release").exists():
        return root
    with file_lock(CACHE_DIR / "build.lock"):
        if (root / "etc" / "os-release").exists():
            return root
        tmp = CACHE_DIR / f".rootfs-{h}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _run(["sh", "-c", f"zstd -dc '{tar}' | tar -x --numeric-owner --xattrs --xattrs-include='*' -C '{tmp}'"])
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
    return root


def _die_with_parent() -> None:
    # A kill -9 of `lab up` must not leave debootstrap writing into the cache.
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(argv, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, preexec_fn=_die_with_parent, **kw)
    if p.returncode != 0:
        raise LabError(f"{' '.join(map(str, argv))[:200]} failed ({p.returncode}):\n"
                       f"{(p.stdout + p.stderr)[-3000:]}")
    return p


def _build(tar: Path, r: dict) -> None:
    work = CACHE_DIR / f".build-{os.getpid()}"
    root = work / "root"
    _rmtree_safe(work)
    root.mkdir(parents=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(r['include'])}",
              r["suite"], str(root), r["mirror"]])
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d").mkdir(exist_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(r["sources"])
        # Do not start services in the chroot while installing.
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LANG="C.UTF-8", LC_ALL="C.UTF-8")
        chroot = ["chroot", str(root)]
        with _chroot_mounts(root):
            _run(chroot + ["apt-get", "update"], env=env)
            _run(chroot + ["apt-get", "install", "-y", "--no-install-recommends", *r["extra"]], env=env)
            _run(chroot + ["systemctl", "enable", "ssh"], env=env)
            _run(chroot + ["systemctl", "mask", "console-getty.service"], env=env)
            _run(chroot + ["apt-get", "clean"], env=env)
        policy.unlink()
        (root / "etc/cloud/cloud.cfg.d/90-rocket-wizard-lab.cfg").write_text(r["cloud_cfg"])
        # Every host gets its own identity at first boot (cloud-init / systemd).
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        (root / "root/.ssh/authorized_keys").unlink(missing_ok=True)
        (root / "etc/machine-id").write_text("")
        dbus_id = root / "var/lib/dbus/machine-id"
        if dbus_id.exists() and not dbus_id.is_symlink():
            dbus_id.unlink()
        (root / "etc/resolv.conf").write_text("")
        (root / "etc/hostname").write_text("localhost\n")
        (root / "etc/hosts").write_text(r["hosts"])  # debootstrap writes none
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        (root / "var/lib/apt/lists/partial").mkdir(parents=True)
        (root / "etc/rocket-wizard-lab-image").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
        part = tar.with_suffix(f".part{os.getpid()}")
        _run(["sh", "-c", f"tar -C '{root}' --numeric-owner --xattrs --xattrs-include='*' -c . | zstd -3 -T0 -q -o '{part}'"])
        os.rename(part, tar)
    finally:
        _umount_tree(root)
        _rmtree_safe(work)


@contextmanager
def _chroot_mounts(root: Path):
    mounts = [("proc", root / "proc", ["-t", "proc", "proc"]),
              ("sys", root / "sys", ["-t", "sysfs", "sysfs"]),
              ("dev", root / "dev", ["--bind", "/dev"]),
              ("pts", root / "dev/pts", ["--bind", "/dev/pts"])]
    done = []
    try:
        for _, target, args in mounts:
            target.mkdir(parents=True, exist_ok=True)
            _run(["mount", *args, str(target)])
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _rmtree_safe(path: Path) -> None:
    """rm -rf that never crosses into a mount (a bind of /dev must not be emptied)."""
    _umount_tree(path)
    if any(m.startswith(str(path.resolve()) + "/") for m in mounted()):
        raise LabError(f"{path} still has mounts; not deleting it")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True)


def _umount_tree(root: Path) -> None:
    """Unmount anything left under root (a build killed half way)."""
    prefix = str(root.resolve()) + "/"
    for target in sorted((m for m in mounted() if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def mounted() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            out.append(line.split()[4].encode().decode("unicode_escape"))
    return out


def clean_stale() -> None:
    """Remove half-built images and extractions of processes that died (kill -9).

    Skipped while a build runs (it holds the lock). Never deletes across a mount:
    a killed build may have left /proc, /sys or /dev bind mounts in its tree."""
    if not CACHE_DIR.is_dir():
        return
    with open(CACHE_DIR / "build.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            for p in CACHE_DIR.iterdir():
                if not re.fullmatch(r"\.build-\d+|\.rootfs-\w+\.tmp\d+|base-\w+\.tar\.part\d+(\.zst)?", p.name):
                    continue
                pid = int(re.findall(r"\d+", p.name)[-1])
                if _pid_alive(pid):
                    continue
                if p.is_dir():
                    _umount_tree(p)
                    if any(m.startswith(str(p.resolve()) + "/") for m in mounted()):
                        continue
                    subprocess.run(["rm", "-rf", "--one-file-system", str(p)], capture_output=True)
                else:
                    p.unlink(missing_ok=True)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
