"""Provider that makes the plan's hosts as lab hosts (systemd-nspawn, see wizard.lab).

The same contract as DigitalOcean (wizard.providers.base.Provider): hosts get the same
cloud-init user data a droplet gets, are found again by the deployment's tag (never by
name alone), and each is reported through on_resource before the wait for it to boot.
Lab host names are "<deployment>-<name>", as droplet names are.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from wizard.catalog import LAB_SIZE
from wizard.lab.lab import DEFAULT_PREFIX, DEFAULT_SUBNET, Lab, LabError, LabHost
from wizard.providers.base import HostSpec, Machine, ProgressCallback, ProviderError, ResourceCallback


class LabProvider:
    def __init__(self, deployment: str, *, lab: Lab | None = None, prefix: str | None = None,
                 subnet: str | None = None, ssh_public_key: str | None = None,
                 boot_timeout: float = 180.0) -> None:
        try:
            self.lab = lab or Lab(prefix or DEFAULT_PREFIX, subnet or DEFAULT_SUBNET)
        except LabError as e:
            raise ProviderError(str(e)) from None
        self.deployment = deployment
        self.tag = f"rw-{deployment}"
        self.ssh_public_key = ssh_public_key.strip() if ssh_public_key else None
        self.boot_timeout = boot_timeout

    def _lab_name(self, name: str) -> str:
        return f"{self.deployment}-{name}"

    def _mine(self) -> list[LabHost]:
        return [h for h in self.lab.hosts() if self.tag in h.tags]

    def _machine(self, h: LabHost) -> Machine:
        role = next((t.split(":", 1)[1] for t in h.tags if t.startswith("role:")), "")
        name = h.name[len(self.deployment) + 1:] if h.name.startswith(self.deployment + "-") else h.name
        return Machine(name=name, role=role, id=h.instance_id, status="active" if h.running else "off",
                       public_ip=h.public_ip, private_ip=h.private_ip, size=LAB_SIZE.slug,
                       price_monthly=0.0, extra={"lab": self.lab.prefix, "lab_host": h.name, "pid": h.pid})

    def ensure_hosts(self, specs: list[HostSpec], *, on_resource: ResourceCallback,
                     progress: ProgressCallback) -> list[Machine]:
        try:
            if not self.lab.is_up():
                progress(f"lab {self.lab.prefix}: bringing the lab up (first time builds the base image)")
                self.lab.up()
            existing = {h.name: h for h in self._mine()}
            meta = {"public-keys": [self.ssh_public_key]} if self.ssh_public_key else {}
            for spec in specs:
                lname = self._lab_name(spec.name)
                if lname not in existing:
                    h = self.lab.create_host(lname, spec.user_data, dict(meta),
                                             tags=[self.tag, f"role:{spec.role}"])
                    on_resource("lab_host", h.instance_id,
                                {"name": spec.name, "lab_host": lname, "lab": self.lab.prefix,
                                 "public_ip": h.public_ip, "private_ip": h.private_ip})
                    progress(f"{spec.name}: lab host {lname} created ({h.public_ip})")

            def boot(spec: HostSpec) -> LabHost:
                h = self.lab.boot_host(self._lab_name(spec.name), timeout=self.boot_timeout)
                progress(f"{spec.name}: booted, sshd listening on {h.public_ip}")
                return h

            with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
                hosts = list(pool.map(boot, specs))
            return [self._machine(h) for h in hosts]
        except LabError as e:
            raise ProviderError(str(e)) from None

    def list_hosts(self) -> list[Machine]:
        return [self._machine(h) for h in self._mine()]

    def destroy(self, *, progress: ProgressCallback) -> list[Machine]:
        gone = []
        for h in self._mine():
            m = self._machine(h)
            try:
                self.lab.destroy_host(h.name)
            except LabError as e:
                raise ProviderError(str(e)) from None
            progress(f"{m.name}: lab host {h.name} destroyed")
            gone.append(m)
        return gone

    def prices(self) -> dict[str, float]:
        return {LAB_SIZE.slug: 0.0}
