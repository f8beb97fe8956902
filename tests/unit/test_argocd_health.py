"""The Argo CD health checks in argocd/health, run in a real Lua 5.1 as Argo CD runs them.

Argo CD (gopher-lua, Lua 5.1) converts the live object to Lua tables (maps to tables, lists to
1-based arrays, nulls dropped), sets it as the global ``obj``, runs the script as a chunk and
reads the table it returns. A script configured through ``argocd-cm`` gets only the base,
package, table and a reduced os library; there is no string or math library, and no string
methods. The harness below reproduces that, so a script that passes here cannot fail in Argo CD
for using something Argo CD does not provide.

Every ``health_test.yaml`` (Argo CD's own format) is run case by case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml


ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "argocd" / "health"
GROUP = "integrations.inori.io"
KINDS = {"Webhook", "ApiKey", "IntegrationEvent"}
VALID_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended"}
WAITING = "Waiting for the operator to reconcile"
MIN_CASES = 4

# What a script in argocd-cm can use: the base library (minus file loading), package/require,
# table, and Argo CD's "safe" os (clock, date, difftime, time).
_BASE = (
    "assert error ipairs next pairs pcall select tonumber tostring type unpack xpcall "
    "rawequal rawget rawset getmetatable setmetatable _VERSION"
).split()


class _KubernetesLoader(yaml.SafeLoader):
    """YAML as the API server hands it to Argo CD: timestamps stay strings."""


_KubernetesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_KubernetesLoader)  # noqa: S506 (a SafeLoader)


def to_lua(lua: Any, value: Any) -> Any:
    """Convert like Argo CD's decodeValue: dicts to tables, lists to 1-based arrays, None dropped."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[str(key)] = to_lua(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            if item is not None:
                table[index] = to_lua(lua, item)
        return table
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)  # Lua 5.1 has one number type, a double, as gopher-lua's LNumber
    raise TypeError(f"a Kubernetes object holds no {type(value).__name__}: {value!r}")


def run_health_script(script: Path, obj: dict[str, Any]) -> dict[str, Any]:
    """Run ``script`` with the global ``obj`` set to ``obj``; return the table it returns."""
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    assert lua.eval("_VERSION") == "Lua 5.1"
    sandbox = lua.eval(
        """
        function(base)
          local env = {}
          for _, name in ipairs(base) do env[name] = _G[name] end
          env.table = table
          env.os = {clock = os.clock, date = os.date, difftime = os.difftime, time = os.time}
          env.require = function(name)
            if name == "os" then return env.os end
            error("module '" .. tostring(name) .. "' not found", 2)
          end
          env._G = env
          -- no string library in Argo CD's VM, so no string methods ("x"):upper() either
          getmetatable("").__index = nil
          return env
        end
        """
    )
    env = sandbox(lua.table_from(_BASE))
    env["obj"] = to_lua(lua, obj)
    compile_chunk = lua.eval("function(source, name) return loadstring(source, name) end")
    chunk = compile_chunk(script.read_text(encoding="utf-8"), "@" + _display(script))
    if isinstance(chunk, tuple):  # (nil, message): a syntax error
        raise AssertionError(f"{script} does not compile in Lua 5.1: {chunk[1]}")
    lua.globals().setfenv(chunk, env)
    result = chunk()
    assert lua51.lua_type(result) == "table", f"{script} returned {result!r}, not a table"
    return {key: result[key] for key in ("status", "message")}


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def health_scripts() -> list[Path]:
    return sorted(HEALTH.glob("*/*/health.lua"))


def health_cases() -> list[Any]:
    cases = []
    for test_file in sorted(HEALTH.glob("*/*/health_test.yaml")):
        kind = test_file.parent.name
        for case in (load_yaml(test_file) or {}).get("tests") or []:
            input_path = case.get("inputPath", "")
            cases.append(pytest.param(test_file.parent, case, id=f"{kind}/{Path(input_path).stem}"))
    return cases


# --- every documented case -----------------------------------------------------------------------


@pytest.mark.parametrize(("directory", "case"), health_cases())
def test_each_testdata_object_gets_the_expected_health_status_and_message(directory: Path, case: dict[str, Any]) -> None:
    expected = case["healthStatus"]
    obj = load_yaml(directory / case["inputPath"])
    assert obj["kind"] == directory.name, f"{case['inputPath']} is a {obj['kind']}, not a {directory.name}"

    hs = run_health_script(directory / "health.lua", obj)

    assert hs["status"] == expected["status"]
    assert (hs["message"] or "") == expected.get("message", "")


# --- the test files themselves -------------------------------------------------------------------


def test_there_is_a_health_script_for_each_of_the_three_kinds() -> None:
    assert {p.parent.name for p in health_scripts()} == KINDS
    assert {p.parent.parent.name for p in health_scripts()} == {GROUP}


@pytest.mark.parametrize("script", health_scripts(), ids=lambda p: p.parent.name)
def test_every_health_script_has_a_health_test_file_with_at_least_four_cases(script: Path) -> None:
    test_file = script.parent / "health_test.yaml"
    assert test_file.is_file(), f"{script} has no health_test.yaml beside it"
    cases = (load_yaml(test_file) or {}).get("tests") or []
    assert len(cases) >= MIN_CASES, f"{test_file} has {len(cases)} case(s), fewer than {MIN_CASES}"


@pytest.mark.parametrize("script", health_scripts(), ids=lambda p: p.parent.name)
def test_every_expected_status_is_one_of_the_four_valid_health_statuses(script: Path) -> None:
    cases = (load_yaml(script.parent / "health_test.yaml") or {}).get("tests") or []
    for case in cases:
        assert set(case) == {"healthStatus", "inputPath"}, case
        assert case["healthStatus"]["status"] in VALID_STATUSES, case
        assert (script.parent / case["inputPath"]).is_file(), case


@pytest.mark.parametrize("script", health_scripts(), ids=lambda p: p.parent.name)
def test_every_testdata_file_is_used_by_a_case(script: Path) -> None:
    cases = (load_yaml(script.parent / "health_test.yaml") or {}).get("tests") or []
    used = {(script.parent / case["inputPath"]).resolve() for case in cases}
    present = {p.resolve() for p in (script.parent / "testdata").glob("*.yaml")}
    assert present - used == set()


@pytest.mark.parametrize("script", health_scripts(), ids=lambda p: p.parent.name)
def test_every_health_script_covers_the_waiting_for_the_operator_case(script: Path) -> None:
    cases = (load_yaml(script.parent / "health_test.yaml") or {}).get("tests") or []
    assert {"status": "Progressing", "message": WAITING} in [c["healthStatus"] for c in cases]


# --- robustness: sparse and odd objects never make a script fail ----------------------------------

SPARSE_OBJECTS = {
    "an empty object": {},
    "an object without metadata": {"status": {"observedGeneration": 1}},
    "an empty status": {"metadata": {"generation": 1}, "status": {}},
    "a status without observedGeneration": {"metadata": {"generation": 1}, "status": {"phase": "Active"}},
    "an empty conditions list": {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": []}},
}


@pytest.mark.parametrize("script", health_scripts(), ids=lambda p: p.parent.name)
@pytest.mark.parametrize("obj", SPARSE_OBJECTS.values(), ids=SPARSE_OBJECTS.keys())
def test_a_sparse_object_is_reported_as_waiting_for_the_operator(script: Path, obj: dict[str, Any]) -> None:
    assert run_health_script(script, obj) == {"status": "Progressing", "message": WAITING}


PHASES = {
    "Webhook": {"Active": "Healthy", "Suspended": "Suspended", "Failing": "Degraded", "Invalid": "Degraded"},
    "ApiKey": {"Active": "Healthy", "Revoked": "Degraded", "Expired": "Degraded"},
    "IntegrationEvent": {"Pending": "Progressing", "Delivering": "Progressing", "Delivered": "Healthy", "Failed": "Degraded"},
}


@pytest.mark.parametrize(
    ("kind", "phase", "expected"),
    [(kind, phase, expected) for kind, phases in PHASES.items() for phase, expected in phases.items()],
)
def test_a_phase_without_conditions_still_maps_to_its_status_with_a_message(kind: str, phase: str, expected: str) -> None:
    obj = {"kind": kind, "metadata": {"generation": 3}, "status": {"observedGeneration": 3, "phase": phase}}
    hs = run_health_script(HEALTH / GROUP / kind / "health.lua", obj)
    assert hs["status"] == expected
    assert isinstance(hs["message"], str) and hs["message"]


@pytest.mark.parametrize("script", health_scripts(), ids=lambda p: p.parent.name)
def test_an_object_without_metadata_generation_is_judged_by_its_phase(script: Path) -> None:
    cases = (load_yaml(script.parent / "health_test.yaml") or {}).get("tests") or []
    case = next(c for c in cases if c["healthStatus"]["status"] == "Healthy")
    obj = load_yaml(script.parent / case["inputPath"])
    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
    del obj["metadata"]["generation"]
    assert run_health_script(script, obj) == case["healthStatus"]


# --- the harness is as strict as Argo CD -----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        'return {status = string.upper("healthy")}',
        'return {status = ("healthy"):upper()}',
        "return {status = tostring(math.floor(1))}",
        'io.write("x") return {status = "Healthy"}',
    ],
)
def test_the_harness_refuses_the_libraries_argo_cd_does_not_open(body: str, tmp_path: Path) -> None:
    probe = tmp_path / "probe.lua"
    probe.write_text(body, encoding="utf-8")
    with pytest.raises(lua51.LuaError):
        run_health_script(probe, {})


@pytest.mark.parametrize("body", ["x = 7 // 2 return {}", "goto done ::done:: return {}"])
def test_the_harness_compiles_as_lua_5_1_and_rejects_newer_syntax(body: str, tmp_path: Path) -> None:
    probe = tmp_path / "probe.lua"
    probe.write_text(body, encoding="utf-8")
    with pytest.raises(AssertionError, match="does not compile in Lua 5.1"):
        run_health_script(probe, {})


def test_the_argocd_cm_example_carries_exactly_the_tested_health_scripts() -> None:
    root = Path(__file__).resolve().parents[2]
    cm = yaml.safe_load((root / "examples" / "gitops" / "argocd-cm-health.yaml").read_text())
    for kind in ("Webhook", "ApiKey", "IntegrationEvent"):
        script = (root / "argocd" / "health" / "integrations.inori.io" / kind / "health.lua").read_text()
        assert cm["data"][f"resource.customizations.health.integrations.inori.io_{kind}"] == script, kind


def test_the_gitops_example_syncs_the_operator_before_the_teams_resources() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "gitops"
    wave = lambda p: int(yaml.safe_load(p.read_text())["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])  # noqa: E731
    assert wave(root / "apps" / "inori-integrations.yaml") < wave(root / "apps" / "team-a-integrations.yaml")
    for manifest in (root / "teams" / "team-a").glob("*.yaml"):
        assert wave(manifest) > wave(root / "apps" / "inori-integrations.yaml"), manifest.name
