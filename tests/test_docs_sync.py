"""The generated references stay in step with the code (issue #7).

docs/configuration.md and docs/api-reference.md are regenerated in memory and compared
with the checked-in files; the method table of camera_service.docgen is compared with
the role table and with the parameters every registered handler declares. A failure
here means: run ``make docs`` (or ``python -m camera_service.docgen --write``) and, for a
new or changed method, update ``METHOD_DOCS`` in camera_service/docgen.py.

tests/test_config.py already checks that conf/camera-service.yaml holds every schema key,
each with its description as a comment and its default; this module checks the
documentation side (and tests/test_packaging.py the packaged copy of that file).
"""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from camera_service import docgen
from camera_service.config.schema import ENV_ALIASES, SCHEMA
from camera_service.events import NOTIFICATION_NAMES, TOPICS
from camera_service.roles import METHOD_ROLES
from camera_service.rpc.registry import MethodRegistry

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
HINT = "out of date: run `make docs` (python -m camera_service.docgen --write)"


def test_api_reference_is_generated_from_the_registry() -> None:
    assert (DOCS / "api-reference.md").read_text(encoding="utf-8") == docgen.render_api_reference(), HINT


def test_configuration_reference_is_generated_from_the_schema() -> None:
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == docgen.render_config_reference(), HINT


def test_method_table_covers_exactly_the_34_methods() -> None:
    assert len(METHOD_ROLES) == 34
    assert list(docgen.METHOD_DOCS) == list(METHOD_ROLES)


def test_reference_lists_every_method_with_its_role() -> None:
    text = docgen.render_api_reference()
    for number, (name, role) in enumerate(METHOD_ROLES.items(), start=1):
        shown = "none (no authentication)" if role is None else role
        assert f"| {number} | [`{name}`](#{name}) | {shown} |" in text, name
        assert f"\n### `{name}`\n" in text, name
    for topic in (*TOPICS, *NOTIFICATION_NAMES):
        assert f"`{topic}`" in text, topic


def test_generator_refuses_a_method_without_description(monkeypatch: pytest.MonkeyPatch) -> None:
    # Copies: the real table's order is part of the output.
    monkeypatch.setattr(docgen, "METHOD_ROLES", {**METHOD_ROLES, "get_new_thing": "viewer"})
    with pytest.raises(ValueError, match="no description for get_new_thing"):
        docgen.render_api_reference()
    without_ping = {name: role for name, role in METHOD_ROLES.items() if name != "ping"}
    monkeypatch.setattr(docgen, "METHOD_ROLES", without_ping)
    with pytest.raises(ValueError, match="described but not a method: ping"):
        docgen.render_api_reference()


def test_every_error_code_is_described() -> None:
    codes = docgen.error_codes()
    assert set(codes.values()) >= {-32700, -32600, -32601, -32602, -32603, -32001, -32002,
                                   -32010, -32020, -32030, -32040, -32050}
    assert set(codes) <= set(docgen.ERROR_DOCS)


def _live_registry() -> tuple[MethodRegistry, list[str]]:
    """Every ``register`` of camera_service.rpc.methods, given stand-ins for its services.

    Registration only builds handlers (some read an attribute of a service, hence mocks
    rather than ``None``). A module whose ``register`` still fails is reported and left
    out.
    """
    import camera_service.rpc.methods as package

    registry = MethodRegistry()
    skipped: list[str] = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is None:
            continue
        parameters = list(inspect.signature(register).parameters.values())[1:]
        stand_ins = [mock.MagicMock(name=p.name) for p in parameters
                 if p.default is inspect.Parameter.empty
                 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        try:
            register(registry, *stand_ins)
        except Exception as exc:  # noqa: BLE001 - report, do not hide
            skipped.append(f"{info.name}: {exc!r}")
    return registry, skipped


def test_parameters_match_the_registered_handlers() -> None:
    registry, skipped = _live_registry()
    compared = 0
    problems: list[str] = []
    for spec in registry:
        if spec.handler is None:  # not implemented yet, or handled by the dispatcher
            continue
        compared += 1
        live = {(p.name, p.kind, p.required) for p in spec.params}
        documented = {(p.name, p.kind, p.required) for p in docgen.METHOD_DOCS[spec.name].params}
        if live != documented:
            problems.append(f"{spec.name}: registered {sorted(live)}, documented {sorted(documented)}")
    assert not problems, "camera_service/docgen.py METHOD_DOCS disagrees with the handlers:\n" + \
        "\n".join(problems)
    assert not skipped, skipped
    assert compared >= 25, compared


def test_every_schema_key_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for entry in SCHEMA:
        assert f"\n### `{entry.key}`\n" in text, entry.key
        assert f"`{entry.env_name}`" in text, entry.env_name
    for alias in ENV_ALIASES:
        assert f"`{alias}`" in text, alias


def test_check_and_write_command_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "camera_service.docgen", *args,
                               "--docs-dir", str(tmp_path)], check=False, capture_output=True, text=True,
                              cwd=REPO, timeout=60)

    assert run("--check").returncode == 1  # nothing written yet
    result = run("--write")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "configuration.md").exists() and (tmp_path / "api-reference.md").exists()
    assert run("--check").returncode == 0
    stale = tmp_path / "api-reference.md"
    stale.write_text(stale.read_text().replace("get_camera_list", "get_camera_lost", 1))
    result = run("--check")
    assert result.returncode == 1
    assert "get_camera_lost" in result.stdout and "out of date" in result.stdout


def test_checked_in_docs_pass_the_check() -> None:
    out = io.StringIO()
    assert docgen.check(DOCS, out) == 0, out.getvalue()


@pytest.mark.parametrize("name", ["installation", "configuration", "operations", "security",
                                  "api-reference", "troubleshooting", "packaging"])
def test_operator_documents_exist(name: str) -> None:
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    assert text.startswith("# "), name
    # Links between the documents point at files that exist.
    for target in re.findall(r"\]\(([a-z-]+\.md)(?:#[^)]*)?\)", text):
        assert (DOCS / target).exists(), (name, target)


def test_troubleshooting_covers_the_pitfall_areas() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    for needle in ("recordDeleteAfter", "%f", "camera<N>", "UMask=0002", "camera-media", "2775",
                   "run_on_demand_close_after",
                   "yuv420p", "metadata node", "same `TZ`", "set_path_defaults", "absolute"):
        assert needle in text, needle
