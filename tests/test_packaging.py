"""The Debian package and the shipped MediaMTX files (issue #7, docs/packaging.md).

The package is built once per run from a copy of the working tree (tracked files plus
untracked, not ignored ones), exactly as ``make deb`` does, with
``dpkg-buildpackage -us -uc -b``; its Python dependencies come from PyPI. The tests
then inspect the .deb (``dpkg-deb -c/-e/-x``), run the maintainer scripts in a sandbox
(every command that would change the machine's accounts or systemd state is a stub that
logs its arguments), and start the service from the extracted virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from camera_service.config import load_config
from camera_service.mediamtx.paths import (
    camera_path_config,
    is_managed,
    path_defaults_patch,
)
from tests.processes import daemon_env

# Building takes about 1.5 min on an idle 2-core machine; allow for a busy one.
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "conf" / "camera-service.yaml"
MEDIAMTX_YML = REPO / "conf" / "mediamtx.yml"
MEDIAMTX_UNIT = REPO / "conf" / "mediamtx.service"
MEDIAMTX_REFERENCE = REPO.parent / "shared" / "reference" / "mediamtx" / "mediamtx.yml"
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "dpkg-deb", "shellcheck", "systemd-analyze")

PREFIX = "/opt/camera-service"
SITE = f"{PREFIX}/lib/python3.11/site-packages"
UNIT = "/lib/systemd/system/camera-service.service"
CONFFILE = "/etc/camera-service/camera-service.yaml"
EXEC_START = (f"{PREFIX}/bin/twistd -n --pidfile= camera-service"
              " --config /etc/camera-service/camera-service.yaml")


def _setup_py_version() -> str:
    match = re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text(encoding="utf-8"))
    assert match, "setup.py has no version"
    return match.group(1)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point Python at this checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CAMERA_SERVICE_")
           and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(extra)
    return env


def _working_tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout
    names = [name for name in out.decode().split("\0") if name]
    # A tracked file deleted in the working tree is not part of it.
    return [name for name in names if os.path.lexists(REPO / name)]


@dataclass
class Built:
    root: Path        # the temporary directory of the build
    source: Path      # the copied tree
    deb: Path
    tree: Path        # dpkg-deb -x
    control: Path     # dpkg-deb -e
    listing: dict[str, str]  # path -> the dpkg-deb -c line
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `bash .ci/bootstrap` (it installs them)")
    root = tmp_path_factory.mktemp("deb")
    source = root / "camera-service"
    for name in _working_tree_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target, follow_symlinks=False)
    started = time.monotonic()
    result = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=source,
                            env=_clean_env(DEBIAN_FRONTEND="noninteractive"),
                            check=False, capture_output=True, text=True, timeout=840)
    seconds = time.monotonic() - started
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"dpkg-buildpackage failed:\n{log[-6000:]}"
    debs = sorted(root.glob("camera-service_*.deb"))
    assert len(debs) == 1, f"expected one .deb, found {debs}"
    tree, control = root / "tree", root / "control"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(debs[0]), str(control)], check=True)
    listing: dict[str, str] = {}
    for line in subprocess.run(["dpkg-deb", "-c", str(debs[0])], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        name = line.split(None, 5)[5].split(" -> ")[0]
        listing["/" + name.lstrip("./").rstrip("/")] = line
    return Built(root, source, debs[0], tree, control, listing, seconds)


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True,
                          text=True).stdout.strip()


def _unit_directives(text: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        directives.setdefault(key.strip(), []).append(value.strip())
    return directives


# --- the package ------------------------------------------------------------------------


def test_package_metadata(built: Built) -> None:
    print(f"dpkg-buildpackage took {built.seconds:.0f} s")
    version = _setup_py_version()
    assert _field(built.deb, "Package") == "camera-service"
    assert _field(built.deb, "Version") == version
    assert built.deb.name.startswith(f"camera-service_{version}_")
    arch = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()
    assert _field(built.deb, "Architecture") == arch
    depends = {item.split()[0] for item in _field(built.deb, "Depends").split(", ")}
    assert {"python3.11", "adduser", "ffmpeg", "v4l-utils"} <= depends


def test_files_in_place(built: Built) -> None:
    expected = [
        f"{PREFIX}/bin/python",
        f"{PREFIX}/bin/twistd",
        f"{PREFIX}/bin/camera-service-admin",
        f"{PREFIX}/bin/camera-service-cli",
        f"{PREFIX}/pyvenv.cfg",
        f"{SITE}/camera_service/__init__.py",
        f"{SITE}/camera_service/docgen.py",
        f"{SITE}/camera_service/__pycache__/__init__.cpython-311.pyc",
        f"{SITE}/twisted/plugins/camera_service_plugin.py",
        f"{SITE}/camera_service-{_setup_py_version()}.dist-info/BUILD_DATE",
        "/usr/bin/camera-service-admin",
        "/usr/bin/camera-service-cli",
        CONFFILE,
        UNIT,
        "/usr/share/camera-service/mediamtx/mediamtx.yml",
        "/usr/share/camera-service/mediamtx/mediamtx.service",
        "/usr/share/doc/camera-service/copyright",
    ]
    missing = [path for path in expected if path not in built.listing]
    assert not missing, f"not in the package: {missing}"
    for doc in ("installation", "configuration", "operations", "security", "api-reference",
                "troubleshooting", "packaging"):
        assert any(p.startswith(f"/usr/share/doc/camera-service/{doc}.md") for p in built.listing), doc
    # Generated at install time, never shipped (a stale cache would hide the plugin).
    assert not [p for p in built.listing if p.endswith("dropin.cache")]
    # Nothing under /var: directories with the service's owner are made by postinst.
    assert not [p for p in built.listing if p.startswith("/var")]
    for path in (UNIT, CONFFILE):
        assert built.listing[path].startswith("-rw-r--r-- root/root"), built.listing[path]
    assert (built.tree / "usr/share/camera-service/mediamtx/mediamtx.yml").read_bytes() == \
        MEDIAMTX_YML.read_bytes()
    assert (built.tree / "usr/share/camera-service/mediamtx/mediamtx.service").read_bytes() == \
        MEDIAMTX_UNIT.read_bytes()


def test_command_lines_and_venv_paths(built: Built) -> None:
    for name in ("camera-service-admin", "camera-service-cli"):
        link = built.tree / "usr/bin" / name
        assert link.is_symlink() and os.readlink(link) == f"{PREFIX}/bin/{name}"
    for name in ("twistd", "camera-service-admin", "camera-service-cli"):
        first = (built.tree / PREFIX.lstrip("/") / "bin" / name).read_text().splitlines()[0]
        assert first == f"#!{PREFIX}/bin/python", (name, first)
    assert os.readlink(built.tree / PREFIX.lstrip("/") / "bin/python3.11") == "/usr/bin/python3.11"
    cfg = (built.tree / PREFIX.lstrip("/") / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg
    # No file may remember where it was built.
    needle = str(built.root).encode()
    leaked = [str(p) for p in (built.tree / "opt").rglob("*")
              if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]
    assert not leaked, f"build path inside: {leaked[:5]}"


def test_venv_imports_and_finds_the_plugin(built: Built, tmp_path: Path) -> None:
    python = built.tree / PREFIX.lstrip("/") / "bin" / "python"
    program = (
        "import json, camera_service, twisted\n"
        "from twisted.plugin import IPlugin, getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "list(getPlugins(IPlugin))\n"
        "print(json.dumps({'package': camera_service.__file__, 'twisted': twisted.__version__,\n"
        "  'taps': sorted(p.tapname for p in getPlugins(IServiceMaker))}))\n"
    )
    result = subprocess.run([str(python), "-c", program], cwd=tmp_path, env=_clean_env(),
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.splitlines()[-1])
    assert facts["package"].startswith(str(built.tree)), facts
    assert "camera-service" in facts["taps"]
    for script in ("camera-service-admin", "camera-service-cli"):
        result = subprocess.run([str(python), str(python.parent / script), "--help"], cwd=tmp_path,
                                env=_clean_env(), check=False, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage:" in result.stdout, (script, result.stderr)


def test_conffile_and_packaged_configuration(built: Built) -> None:
    assert (built.control / "conffiles").read_text().split() == [CONFFILE]
    packaged = (built.tree / CONFFILE.lstrip("/")).read_text(encoding="utf-8")
    shipped = SHIPPED.read_text(encoding="utf-8")
    # Exactly one change: the media group shared with MediaMTX (media.md §5.1).
    differing = [(a, b) for a, b in zip(shipped.splitlines(), packaged.splitlines()) if a != b]
    assert differing == [('  group: ""', "  group: camera-media")]
    assert len(shipped.splitlines()) == len(packaged.splitlines())
    config = load_config(str(built.tree / CONFFILE.lstrip("/")), {})
    assert config.storage.group == "camera-media"
    assert config.server.state_dir == "/var/lib/camera-service"
    assert config.mediamtx.recordings_path == "/var/lib/camera-service/recordings"
    assert config.mediamtx.snapshots_path == "/var/lib/camera-service/snapshots"


def test_unit_file_verifies_and_is_hardened(built: Built, tmp_path: Path) -> None:
    text = (built.tree / UNIT.lstrip("/")).read_text()
    d = _unit_directives(text)
    assert d["ExecStart"] == [EXEC_START]
    assert d["User"] == ["camera-service"]
    assert set(d["SupplementaryGroups"][0].split()) == {"video", "camera-media"}
    assert d["UMask"] == ["0002"]
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["78"]
    assert d["ProtectSystem"] == ["strict"]
    assert "/var/lib/camera-service" in d["ReadWritePaths"][0].split()
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["DeviceAllow"] == ["char-video4linux rw"]
    assert "mediamtx.service" in d["Wants"][0].split()
    assert "mediamtx.service" in d["After"][0].split()
    assert "Requires" not in d and "BindsTo" not in d  # MediaMTX must never stop the service
    assert "RestrictSUIDSGID" not in d  # it would forbid the setgid media directories
    # systemd-analyze verify checks that ExecStart is executable: point it at the
    # extracted tree (the only change), so every other complaint fails the test.
    local = tmp_path / "camera-service.service"
    local.write_text(text.replace(f"{PREFIX}/", f"{built.tree}{PREFIX}/"))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(local)],
                            check=False, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 3.0, result.stdout[-3000:]


def test_maintainer_scripts_pass_sh_n_and_shellcheck(built: Built) -> None:
    scripts = [built.control / name for name in ("postinst", "prerm", "postrm")]
    scripts += [REPO / "debian" / f"camera-service.{name}" for name in ("postinst", "prerm", "postrm")]
    for script in scripts:
        assert script.exists(), script
        result = subprocess.run(["sh", "-n", str(script)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, (script, result.stderr)
        result = subprocess.run(["shellcheck", "--shell=sh", str(script)], check=False, capture_output=True,
                                text=True)
        assert result.returncode == 0, (script, result.stdout)
    for name in ("postinst", "prerm", "postrm"):
        mode = (built.control / name).stat().st_mode
        assert mode & stat.S_IXUSR, name


# --- maintainer scripts in a sandbox ------------------------------------------------------

STUBS = {
    # name -> shell body; every stub logs "name args" to $STUB_LOG.
    "addgroup": "",
    "adduser": "",
    "deluser": "",
    "delgroup": "",
    "chown": "",
    "dpkg-statoverride": 'case "$1" in --list) exit 1;; esac',
    "deb-systemd-helper": 'case "$*" in *was-enabled*) exit 0;; esac',
    "deb-systemd-invoke": "",
    "systemctl": "",
    # getent: "known" names listed in $STUB_KNOWN exist, nothing else does.
    "getent": 'for n in $STUB_KNOWN; do [ "$n" = "$2" ] && { echo "$2:x:999:"; exit 0; }; done; exit 2',
}


@dataclass
class Sandbox:
    dir: Path
    state: Path
    config_dir: Path
    log: Path
    env: dict[str, str]

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def _sandbox(tmp_path: Path, known: str = "") -> Sandbox:
    stubs = tmp_path / "stubs"
    stubs.mkdir(parents=True)
    log = tmp_path / "calls.log"
    for name, body in STUBS.items():
        path = stubs / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$STUB_LOG"\n{body}\nexit 0\n')
        path.chmod(0o755)
    env = _clean_env(PATH=f"{stubs}:{os.environ['PATH']}", STUB_LOG=str(log), STUB_KNOWN=known)
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "camera-service.yaml").write_text("# config\n")
    return Sandbox(tmp_path, tmp_path / "state", config_dir, log, env)


def _redirected(script: Path, target: Path, sandbox: Sandbox, venv: Path) -> Path:
    """The script with its absolute locations moved into the sandbox (the only change)."""
    text = script.read_text()
    replacements = {
        "STATE_DIR=/var/lib/camera-service\n": f"STATE_DIR={sandbox.state}\n",
        "CONFIG=/etc/camera-service/camera-service.yaml\n":
            f"CONFIG={sandbox.config_dir}/camera-service.yaml\n",
        "CONFIG_DIR=/etc/camera-service\n": f"CONFIG_DIR={sandbox.config_dir}\n",
        "VENV=/opt/camera-service\n": f"VENV={venv}\n",
    }
    rest = text
    for old, new in replacements.items():
        text = text.replace(old, new)
        rest = rest.replace(old, "")
    code = "\n".join(line for line in rest.splitlines() if not line.lstrip().startswith("#"))
    for path in ("/var/lib/camera-service", "/etc/camera-service", "/opt/camera-service"):
        assert path not in code, f"{script.name} uses {path} outside the redirected variables"
    target.write_text(text)
    return target


def _run(script: Path, sandbox: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-e", str(script), *args], env={**sandbox.env, **env},
                          check=False, capture_output=True, text=True, timeout=120)


def test_postinst_configure(built: Built, tmp_path: Path) -> None:
    sandbox = _sandbox(tmp_path)
    venv = built.tree / PREFIX.lstrip("/")
    plugins = venv / "lib/python3.11/site-packages/twisted/plugins"
    (plugins / "dropin.cache").write_bytes(b"stale")
    postinst = _redirected(built.control / "postinst", tmp_path / "postinst", sandbox, venv)

    result = _run(postinst, sandbox, "configure", "")
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert "addgroup --system --quiet camera-media" in calls
    assert any(c.startswith("adduser --system --quiet --group") and c.endswith(" camera-service")
               for c in calls), calls
    assert "adduser --quiet camera-service video" in calls
    assert "adduser --quiet camera-service camera-media" in calls
    assert (f"chown camera-service:camera-media {sandbox.state} {sandbox.state}/recordings"
            f" {sandbox.state}/snapshots") in calls
    assert (f"dpkg-statoverride --update --add root camera-service 0640"
            f" {sandbox.config_dir}/camera-service.yaml") in calls
    assert any(c.startswith("deb-systemd-helper enable") for c in calls), calls
    # media.md §5.1: state 0750, media roots setgid 2775.
    assert stat.S_IMODE(sandbox.state.stat().st_mode) == 0o750
    for name in ("recordings", "snapshots"):
        assert stat.S_IMODE((sandbox.state / name).stat().st_mode) == 0o2775, name
    # The JWT secret: what camera_service.auth.secret would generate, mode 0600.
    secret = sandbox.state / "jwt_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    value = secret.read_text()
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}\n", value), value
    assert any(c.startswith("chown camera-service: ") and "jwt_secret" in c for c in calls)
    assert not list(sandbox.state.glob(".jwt_secret.*"))
    # The plugin cache was rebuilt (the stale one removed first).
    assert (plugins / "dropin.cache").read_bytes() != b"stale"
    assert b"camera_service_plugin" in (plugins / "dropin.cache").read_bytes()

    # Again, as on an upgrade with existing accounts: nothing created twice, secret kept.
    sandbox.log.unlink()
    result = _run(postinst, sandbox, "configure", "1.0.0",
                  STUB_KNOWN="camera-service camera-media")
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert not [c for c in calls if c.startswith(("addgroup", "adduser --system"))], calls
    assert secret.read_text() == value


def _state_with_media(sandbox: Sandbox) -> None:
    for name in ("recordings/camera0", "snapshots/camera0", "run"):
        (sandbox.state / name).mkdir(parents=True)
    for name in ("jwt_secret", "api-keys.json", "camera-ids.json"):
        (sandbox.state / name).write_text("x")
    (sandbox.state / "recordings/camera0/camera0_2025-01-15_14-30-00.mp4").write_bytes(b"mp4")
    (sandbox.state / "snapshots/camera0/camera0_1.jpg").write_bytes(b"jpg")


def test_postrm_purge_keeps_media_unless_asked(built: Built, tmp_path: Path) -> None:
    venv = tmp_path / "opt"
    for case in ("default", "flag", "env"):
        sandbox = _sandbox(tmp_path / case, known="camera-service")
        _state_with_media(sandbox)
        venv.mkdir(exist_ok=True)
        postrm = _redirected(built.control / "postrm", sandbox.dir / "postrm", sandbox, venv)
        env = {}
        if case == "flag":
            (sandbox.state / "purge-media").touch()
        if case == "env":
            env["CAMERA_SERVICE_PURGE_MEDIA"] = "yes"
        result = _run(postrm, sandbox, "purge", **env)
        assert result.returncode == 0, (case, result.stderr)
        calls = sandbox.calls()
        assert "deluser --system --quiet camera-service" in calls, (case, calls)
        assert not sandbox.config_dir.exists(), case
        assert not venv.exists(), case
        if case == "default":
            assert sorted(p.name for p in sandbox.state.iterdir()) == ["recordings", "snapshots"]
            assert (sandbox.state / "recordings/camera0/camera0_2025-01-15_14-30-00.mp4").exists()
            assert (sandbox.state / "snapshots/camera0/camera0_1.jpg").exists()
            assert "kept" in result.stderr
        else:
            assert not sandbox.state.exists(), case


def test_postrm_remove_keeps_configuration_and_state(built: Built, tmp_path: Path) -> None:
    sandbox = _sandbox(tmp_path, known="camera-service")
    _state_with_media(sandbox)
    venv = tmp_path / "opt"
    (venv / "lib").mkdir(parents=True)
    postrm = _redirected(built.control / "postrm", tmp_path / "postrm", sandbox, venv)
    result = _run(postrm, sandbox, "remove")
    assert result.returncode == 0, result.stderr
    assert not venv.exists()
    assert (sandbox.config_dir / "camera-service.yaml").exists()
    assert (sandbox.state / "jwt_secret").exists()
    assert not [c for c in sandbox.calls() if c.startswith(("deluser", "delgroup"))]


# --- the service from the package ---------------------------------------------------------


def test_service_runs_from_the_packaged_venv(built: Built, tmp_path: Path) -> None:
    venv = built.tree / PREFIX.lstrip("/")
    env = _clean_env(**{k: v for k, v in daemon_env(tmp_path).items()
                        if k.startswith("CAMERA_SERVICE_")})
    # camera-media exists only where the package was installed.
    env["CAMERA_SERVICE_STORAGE_GROUP"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    argv = [str(venv / "bin/python"), str(venv / "bin/twistd"), "-n", "--pidfile=",
            "camera-service", "--config", str(built.tree / CONFFILE.lstrip("/"))]
    out = (tmp_path / "daemon.log").open("w")
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    health = f"http://127.0.0.1:{env['CAMERA_SERVICE_HTTP_HEALTH_PORT']}/health"
    try:
        body: dict[str, Any] | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(health, timeout=2) as answer:
                    body = json.loads(answer.read())
                    break
            except OSError:
                time.sleep(0.25)
        assert body is not None, (tmp_path / "daemon.log").read_text()[-3000:]
        assert body["version"] == _setup_py_version()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        out.close()
    # twistd re-raises SIGTERM after its orderly shutdown (as in tests/test_process.py);
    # systemd counts that as a clean stop.
    log = (tmp_path / "daemon.log").read_text()
    assert process.returncode in (0, -signal.SIGTERM), log[-3000:]
    assert "Server Shut Down." in log, log[-3000:]


# --- the MediaMTX files ---------------------------------------------------------------------


def test_mediamtx_yml_matches_what_the_service_sends() -> None:
    document = yaml.safe_load(MEDIAMTX_YML.read_text(encoding="utf-8"))
    config = load_config(str(SHIPPED), {})
    assert document["api"] is True
    assert document["apiAddress"] == f"127.0.0.1:{config.mediamtx.api_port}"
    assert document["playback"] is False
    assert document["rtsp"] is True and "tcp" in document["rtspTransports"]
    assert document["rtspAddress"] == f":{config.mediamtx.rtsp_port}"
    assert document["hls"] is True and document["hlsAddress"] == f":{config.mediamtx.hls_port}"
    assert document["webrtc"] is True
    assert document["webrtcAddress"] == f":{config.mediamtx.webrtc_port}"
    # Loopback may publish and use the API; everyone may read (media.md §2.11).
    users = document["authInternalUsers"]
    local = [u for u in users if sorted(u["ips"]) == ["127.0.0.1", "::1"]]
    assert len(local) == 1
    assert {p["action"] for p in local[0]["permissions"]} >= {"api", "publish", "read"}
    for user in users:
        if user is not local[0]:
            assert {p["action"] for p in user["permissions"]} <= {"read"}, user
    defaults = document["pathDefaults"]
    # The same values the service PATCHes into the path defaults and writes on every path.
    assert path_defaults_patch(config, playback=False).items() <= defaults.items()
    body = camera_path_config(run_on_demand="/usr/bin/ffmpeg -version", config=config,
                              record=False, playback=False)
    for key in ("recordPath", "recordFormat", "recordPartDuration", "recordSegmentDuration",
                "recordDeleteAfter", "runOnDemandStartTimeout", "runOnDemandCloseAfter"):
        assert defaults[key] == body[key], key
    assert defaults["recordDeleteAfter"] == "0s"
    assert defaults["recordPath"] == \
        "/var/lib/camera-service/recordings/%path/%path_%Y-%m-%d_%H-%M-%S"
    assert not [name for name in (document.get("paths") or {}) if is_managed(name)]


@pytest.mark.skipif(not MEDIAMTX_REFERENCE.exists(), reason="shared reference not checked out")
def test_mediamtx_yml_uses_only_known_keys() -> None:
    ours = yaml.safe_load(MEDIAMTX_YML.read_text(encoding="utf-8"))
    reference = yaml.safe_load(MEDIAMTX_REFERENCE.read_text(encoding="utf-8"))
    assert set(ours) <= set(reference), set(ours) - set(reference)
    assert set(ours["pathDefaults"]) <= set(reference["pathDefaults"])


def test_mediamtx_unit(tmp_path: Path) -> None:
    text = MEDIAMTX_UNIT.read_text()
    d = _unit_directives(text)
    assert d["User"] == ["mediamtx"]
    assert set(d["SupplementaryGroups"][0].split()) == {"camera-media", "video"}
    assert d["UMask"] == ["0002"]
    assert "/var/lib/camera-service/recordings" in d["ReadWritePaths"][0].lstrip("-").split()
    assert d["DeviceAllow"] == ["char-video4linux rw"]
    # The MediaMTX binary is not installed here: verify with a stand-in executable.
    exec_start = d["ExecStart"][0]
    assert exec_start == "/usr/local/bin/mediamtx /etc/mediamtx/mediamtx.yml"
    local = tmp_path / "mediamtx.service"
    local.write_text(text.replace("/usr/local/bin/mediamtx", shutil.which("true") or "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
