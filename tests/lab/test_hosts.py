"""Lab hosts behave like fresh droplets: cloud-init, pinned SSH host key, two networks, reboots."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

pytestmark = pytest.mark.lab


def user_data(host_key: asyncssh.SSHKey) -> str:
    priv = host_key.export_private_key("openssh").decode()
    pub = host_key.export_public_key("openssh").decode().strip()
    indented = "".join(f"    {line}\n" for line in priv.splitlines())
    return (
        "#cloud-config\n"
        "ssh_deletekeys: true\n"
        "ssh_genkeytypes: [ed25519]\n"
        "ssh_keys:\n"
        "  ed25519_private: |\n" + indented +
        f"  ed25519_public: {pub}\n"
    )


@pytest.fixture(scope="module")
def keys():
    names = ["h1", "h2"]
    return {
        "client": asyncssh.generate_private_key("ssh-ed25519"),
        "host": {n: asyncssh.generate_private_key("ssh-ed25519") for n in names},
    }


@pytest.fixture
def two(lab, lab_hosts, keys):
    client_pub = keys["client"].export_public_key("openssh").decode().strip()
    names = list(keys["host"])
    hosts = lab_hosts(names, user_data_for=lambda n: user_data(keys["host"][n]),
                      meta_data_for=lambda n: {"public-keys": [client_pub]})
    return dict(zip(names, hosts))


async def connect(host, host_key, client_key):
    return await asyncssh.connect(
        host.public_ip, username="root", client_keys=[client_key],
        known_hosts=([host_key.convert_to_public()], [], []), connect_timeout=10)


async def test_pinned_ssh_networks_and_reboot(lab, two, keys):
    h1, h2 = two["h1"], two["h2"]
    assert h1.public_ip != h2.public_ip and h1.private_ip != h2.private_ip
    assert h1.public_ip.rsplit(".", 1)[1] == h1.private_ip.rsplit(".", 1)[1]
    await asyncio.gather(*(asyncio.to_thread(lab.wait_cloud_init, h.name) for h in (h1, h2)))

    async with await connect(h1, keys["host"]["h1"], keys["client"]) as c:
        r = await c.run("systemctl is-system-running --wait", check=False)
        state = r.stdout.strip()
        assert state == "running", f"system {state}; " + await why_degraded(c)
        addrs = (await c.run("ip -4 -o addr show", check=True)).stdout
        assert any(line.split()[1] == "eth0" and f"{h1.public_ip}/24" in line for line in addrs.splitlines())
        assert any(line.split()[1] == "eth1" and f"{h1.private_ip}/24" in line for line in addrs.splitlines())
        route = (await c.run("ip route show default", check=True)).stdout
        assert f"via {lab.gateway} dev eth0" in route
        # h1 reaches h2 over the private network.
        r = await c.run(f"timeout 3 bash -c '</dev/tcp/{h2.private_ip}/22'", check=False)
        assert r.exit_status == 0, r.stderr
        assert (await c.run("hostname", check=True)).stdout.strip() == "h1"

    # The pinned key is the only one accepted: h2's key does not match h1.
    with pytest.raises((asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied, asyncssh.DisconnectError)):
        await connect(h1, keys["host"]["h2"], keys["client"])

    # A reboot from inside comes back, with the same host key and instance.
    boots = lab.boots("h1")
    async with await connect(h1, keys["host"]["h1"], keys["client"]) as c:
        await c.run("systemd-run --on-active=1 systemctl reboot", check=True)
    back = await asyncio.to_thread(lab.wait_rebooted, "h1", boots, 120)
    assert back.running and back.pid != h1.pid
    assert lab.boots("h1") == boots + 1
    async with await connect(back, keys["host"]["h1"], keys["client"]) as c:
        r = await c.run("systemctl is-system-running --wait; cat /var/lib/cloud/data/instance-id", check=False)
        assert r.stdout.split()[1:] == [h1.instance_id]
        assert r.stdout.split()[0] == "running", await why_degraded(c)


async def why_degraded(c) -> str:
    r = await c.run("systemctl --failed --no-legend --plain; for u in $(systemctl --failed --no-legend --plain"
                    " | cut -d' ' -f1); do journalctl -b -u $u --no-pager | tail -20; done", check=False)
    return "failed units after reboot:\n" + r.stdout


async def test_exec_and_records_seen_by_another_lab_object(lab, lab_hosts):
    from wizard.lab.lab import Lab

    [h] = lab_hosts(1)
    other = Lab(prefix=lab.prefix, subnet=lab.subnet)  # another process would see the same
    assert [x.name for x in other.hosts()] == [h.name]
    assert other.host(h.name).pid == h.pid
    p = lab.exec(h.name, ["sh", "-c", "cat; echo; id -u"], input="hello")
    assert p.returncode == 0 and p.stdout.split() == ["hello", "0"]
    lab.stop_host(h.name)
    assert not lab.host(h.name).running
    assert lab.status()["hosts"][0]["running"] is False
    h2 = lab.boot_host(h.name)  # starts the same host again, same address
    assert h2.running and h2.public_ip == h.public_ip
