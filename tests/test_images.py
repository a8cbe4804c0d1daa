"""Container images and shell scripts: what can be checked without a Docker engine.

hadolint on every Dockerfile, shellcheck on every shell script of the repository, and the contract of
``images/build.sh``: image names from ``vitjob.images`` only, base images and versions from
``images/versions.env`` only, a non-root user, an entrypoint that runs ``vitjob launch``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from vitjob import images

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
BUILD = IMAGES / "build.sh"
DOCKERFILE_DIRS = {"ascend": "ascend", "gpu": "gpu", "cpu": "cpu", "ascend310": "ascend310-infer"}
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
SKIP_DIRS = {".git", ".venv", ".tools", "node_modules", "build", "out", ".pytest_cache", ".ruff_cache"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: it is in the dev extra (pip install -e '.[dev]')")
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def _shell_scripts() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            is_ci_script = path.parent.name == ".ci" and path.read_bytes().startswith(b"#!/usr/bin/env bash")
            if name.endswith(".sh") or is_ci_script:
                found.append(path)
    return sorted(found)


def _versions() -> dict[str, str]:
    pairs = {}
    for line in (IMAGES / "versions.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def _dry_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MINDSPORE_LITE")}
    run_env.update(env or {})
    return subprocess.run(
        ["bash", str(BUILD), "--dry-run", *args], capture_output=True, text=True, env=run_env, check=False
    )


def _final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


def test_every_kind_has_a_dockerfile():
    assert set(DOCKERFILE_DIRS) == set(images.REPOSITORIES)
    assert [p.parent.name for p in DOCKERFILES] == sorted(DOCKERFILE_DIRS.values())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    proc = subprocess.run(
        [_tool("hadolint"), "--config", str(IMAGES / "hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_clean_on_every_script():
    scripts = _shell_scripts()
    names = {str(p.relative_to(ROOT)) for p in scripts}
    assert {"images/build.sh", "ascend310_infer/build.sh", "dev.sh"} <= names
    proc = subprocess.run(
        [_tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_build_script_uses_the_image_names_of_vitjob_images():
    proc = _dry_run(
        "reg.example.com/team",
        "9.9.9",
        env={"MINDSPORE_LITE_URL": "https://h/l.tgz", "MINDSPORE_LITE_SHA256": "0" * 64},
    )
    assert proc.returncode == 0, proc.stderr
    built = {}
    for line in proc.stdout.splitlines():
        argv = shlex.split(line)
        assert argv[:4] == ["env", "DOCKER_BUILDKIT=1", "docker", "build"]
        dockerfile = Path(argv[argv.index("-f") + 1])
        built[dockerfile.parent.name] = argv[argv.index("-t") + 1]
        assert argv[-1] == str(ROOT)  # the build context is the repository
    assert built == {
        DOCKERFILE_DIRS[kind]: images.default_image(kind, "reg.example.com/team", "9.9.9")
        for kind in DOCKERFILE_DIRS
    }


def test_build_script_defaults_come_from_vitjob_images():
    proc = _dry_run("--kind", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert f"-t {images.default_image('cpu')} " in proc.stdout


def test_build_args_are_exactly_the_pinned_versions():
    versions = _versions()
    for kind, directory in DOCKERFILE_DIRS.items():
        proc = _dry_run("--kind", kind, env={"MINDSPORE_LITE_URL": "u", "MINDSPORE_LITE_SHA256": "s"})
        assert proc.returncode == 0, proc.stderr
        argv = shlex.split(proc.stdout)
        passed = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--build-arg")
        declared = set(re.findall(r"^ARG (\w+)", (IMAGES / directory / "Dockerfile").read_text(), re.M))
        assert set(passed) == declared, kind  # every ARG is fed, nothing else
        for name, value in passed.items():
            assert value == {"MINDSPORE_LITE_URL": "u", "MINDSPORE_LITE_SHA256": "s"}.get(
                name, versions[name]
            )


def test_ascend310_image_needs_the_lite_package():
    proc = _dry_run("--kind", "ascend310")
    assert proc.returncode == 2
    assert "needs MINDSPORE_LITE_SHA256 MINDSPORE_LITE_URL" in proc.stderr
    everything = _dry_run()  # all kinds: ascend310 skipped with a warning, the others built
    assert everything.returncode == 0, everything.stderr
    assert "skipping ascend310" in everything.stderr
    assert everything.stdout.count("docker build") == 3


def test_build_script_rejects_bad_arguments():
    assert _dry_run("--kind", "tpu").returncode == 2
    assert _dry_run("a", "b", "c").returncode == 2
    assert _dry_run("--bogus").returncode == 2


def test_base_images_and_versions_are_pinned():
    versions = _versions()
    for key, value in versions.items():
        if key.endswith("_BASE_IMAGE"):
            name, _, tag = value.rpartition(":")
            assert name and tag and tag != "latest" and re.search(r"\d", tag), f"{key}={value} is not pinned"
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        stages = set(re.findall(r"^FROM \S+ AS (\w+)", text, re.M))
        for base in re.findall(r"^FROM (\S+)", text, re.M):
            match = re.fullmatch(r"\$\{(\w+)\}", base)
            assert base in stages or (match and match.group(1) in versions), f"{dockerfile}: FROM {base}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_contract(dockerfile):
    text = dockerfile.read_text()
    final = _final_stage(text)
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1] not in ("root", "0", "0:0"), "the image must run as a non-root user"
    assert re.search(r"^HEALTHCHECK ", final, re.M)
    entry = re.search(r"^ENTRYPOINT (.+)$", final, re.M).group(1)
    if entry == '["vitjob", "launch"]':
        pass
    else:
        assert entry == '["/usr/local/bin/vitjob-entrypoint"]'
        assert 'exec vitjob launch "$@"' in (IMAGES / "vitjob-entrypoint.sh").read_text()
    assert not re.search(r"^(ENV|ARG)\s+\w*(PASSWORD|SECRET|TOKEN|CREDENTIAL)", text, re.M | re.I)
    for repo in images.REPOSITORIES.values():  # image names live in vitjob/images.py only
        assert repo not in text
    assert "-c requirements.lock" in text  # the pinned dependency set


def test_build_context_ignore_files_keep_the_venv_out():
    ignores = [(IMAGES / d / "Dockerfile.dockerignore").read_text() for d in DOCKERFILE_DIRS.values()]
    assert len(set(ignores)) == 1
    lines = [line for line in ignores[0].splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"  # an allow-list: .venv, data, runs are never sent


def test_build_script_names_no_image():
    text = BUILD.read_text()
    for repo in images.REPOSITORIES.values():
        assert repo not in text
    assert images.REGISTRY not in text
    assert "-m vitjob.images" in text
