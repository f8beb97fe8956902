"""The image recipe, checked as Docker would read it (no container engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser


def _stages(parser: DockerfileParser) -> list[list[dict]]:
    stages: list[list[dict]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_the_image_is_built_in_stages_from_a_slim_python_pinned_by_version(dockerfile: DockerfileParser) -> None:
    stages = _stages(dockerfile)
    assert len(stages) >= 2
    declared = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile.content, re.MULTILINE)
    base = declared.group(1) if declared else ""
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    assert all(stage[0]["value"].startswith("${PYTHON_IMAGE}") for stage in stages)


def test_the_final_stage_runs_as_a_fixed_non_root_user(dockerfile: DockerfileParser) -> None:
    final = _stages(dockerfile)[-1]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000


def test_the_entrypoint_is_inori_operator_run(dockerfile: DockerfileParser) -> None:
    final = _stages(dockerfile)[-1]
    entry = json.loads(next(i["value"] for i in final if i["instruction"] == "ENTRYPOINT"))
    cmd = json.loads(next(i["value"] for i in final if i["instruction"] == "CMD"))
    assert entry + cmd == ["inori-operator", "run"]


def test_the_final_stage_has_no_compilers_caches_or_package_installs(dockerfile: DockerfileParser) -> None:
    final = _stages(dockerfile)[-1]
    runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
    assert not re.search(r"apt-get|apk|gcc|build-essential|pip install", runs)
    assert any(i["instruction"] == "COPY" and "--from=build" in i["value"] for i in final)


def test_dependencies_are_installed_from_the_lock_without_a_pip_cache(dockerfile: DockerfileParser) -> None:
    build = " ".join(i["value"] for i in _stages(dockerfile)[0] if i["instruction"] == "RUN")
    assert "--constraint requirements.lock" in build and "--no-cache-dir" in build


def test_the_image_carries_oci_labels(dockerfile: DockerfileParser) -> None:
    labels = dockerfile.labels
    for key in ("title", "version", "source", "licenses", "description"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
