"""gcloud, the one way the rollout changes anything, on either target.

TARGET=cloudrun uses the user's own gcloud configuration (Cloud Run); TARGET=local uses the local
Cloud Run's (`$RUN_DIR/gcloud`, written by `make emulator`). PROJECT and REGION, when set, are
passed as flags; otherwise the configuration's own are used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

from iris_tools.environment import value
from iris_tools.google.targets import TARGETS, TOKEN_FILE, directories, run_dir

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class GcloudError(Exception):
    """A gcloud command that failed; the message is gcloud's own."""


class Gcloud:
    can_run = True  # gcloud commands run (a rollout job's ServiceAccount has none)

    def __init__(self, target: str, project: str | None = None, region: str | None = None,
                 binary: str | None = None) -> None:
        if target not in TARGETS:
            raise GcloudError(f"TARGET={target!r}: use cloudrun (your gcloud configuration) or local (make emulator)")
        self.target = target
        self.binary = binary or value("GCLOUD") or shutil.which("gcloud") or "/usr/bin/gcloud"
        self.env = dict(os.environ)  # gcloud reads its own variables (CLOUDSDK_*) too
        self._properties: dict[str, Any] | None = None
        if target == "local":
            config = directories(run_dir())[1]
            if not (config / "active_config").exists():
                raise GcloudError(f"no local Cloud Run configuration at {config}: start it with `make emulator`")
            self.env["CLOUDSDK_CONFIG"] = str(config)
        self.project = project or self.property("core/project")
        self.region = region or self.property("run/region")
        if not self.project:
            raise GcloudError("no project: set PROJECT or `gcloud config set project ...`")
        if not self.region:
            raise GcloudError("no region: set REGION or `gcloud config set run/region ...`")

    def property(self, name: str) -> str | None:
        """A property of the configuration in use ("core/project"), environment overrides included; every
        property is read by one `gcloud config list` (each gcloud start costs a second or more)."""
        if self._properties is None:
            result = subprocess.run([self.binary, "config", "list", "--format=json"], env=self.env,
                                    capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            try:
                self._properties = json.loads(result.stdout) if result.returncode == 0 else {}
            except ValueError:
                self._properties = {}
        section, _, key = name.partition("/")
        value = (self._properties.get(section) or {}).get(key)
        return str(value) if value not in (None, "", "(unset)") else None

    def run(self, *args: str, timeout: float = 1800) -> str:
        command = [self.binary, *args, "--quiet", f"--project={self.project}"]
        if args[:1] == ("run",):
            command.append(f"--region={self.region}")
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            message = ANSI.sub("", result.stderr).strip().splitlines()
            raise GcloudError(next((line for line in reversed(message) if line.startswith("ERROR")),
                                   message[-1] if message else f"gcloud exited {result.returncode}"))
        return ANSI.sub("", result.stdout)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--format=json"))

    def identity_token(self) -> str:
        """What a caller of a private service sends as its bearer token: Google's identity token on Cloud Run,
        the local Cloud Run's own token locally."""
        if self.target == "local":
            path = directories(run_dir())[0] / TOKEN_FILE
            return path.read_text().strip() if path.exists() else ""
        return self.run("auth", "print-identity-token").strip()

    def access_token(self) -> str | None:
        """A bearer token for Google APIs on Cloud Run; none locally (auth is disabled there)."""
        if self.target == "local":
            return None
        return self.run("auth", "print-access-token").strip()
