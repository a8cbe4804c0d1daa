"""Container images and shell scripts: what can be checked without a Docker engine.

hadolint on every Dockerfile, shellcheck on every shell script of the repository, and the contract of
``images/build.sh``: image names from ``vitjob.images`` only, base images and versions from
``images/versions.env`` only, a non-root user, an entrypoint that runs ``vitjob launch``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from ci_env import in_ci

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


def _dry_run(
    *args: str, env: dict[str, str] | None = None, builder: str = "docker", script: Path = BUILD
) -> subprocess.CompletedProcess[str]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MINDSPORE_LITE")}
    run_env.update(env or {})
    return subprocess.run(
        ["bash", str(script), "--dry-run", "--builder", builder, *args],
        capture_output=True,
        text=True,
        env=run_env,
        check=False,
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


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_copies_the_templates_vitjob_links_to(dockerfile):
    # vitjob/manifests is a symlink: without ../manifests in the build, the wheel has no template.
    assert os.readlink(ROOT / "vitjob" / "manifests") == "../manifests"
    copies = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile.read_text(), re.M)
    sources = {word for line in copies for word in line.split() if not word.startswith("--")}
    assert "vitjob" in sources and "manifests" in sources
    assert "!manifests/" in (dockerfile.parent / "Dockerfile.dockerignore").read_text().splitlines()


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


# ---------------------------------------------------------------- the buildah builder (dry runs)

DEBIAN_SOURCES = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# What the cpu image's key must follow (a change to any of these is a different image) ...
KEY_INPUTS = [
    "vitjob/errors.py",
    "manifests/vitjob.yaml.j2",
    "requirements.lock",
    "pyproject.toml",
    "README.md",
    "images/cpu/Dockerfile",
    "images/cpu/Dockerfile.dockerignore",
]
# ... and what it must not: files the cpu image does not contain.
NOT_KEY_INPUTS = ["images/README.md", "images/gpu/Dockerfile", "ascend310_infer/CMakeLists.txt"]


def _apt_etc(path: Path, sources: str = DEBIAN_SOURCES) -> Path:
    (path / "sources.list.d").mkdir(parents=True)
    (path / "sources.list.d" / "debian.sources").write_text(sources)
    return path


def _tree(dest: Path) -> Path:
    """A copy of what build.sh reads (symlinks kept: vitjob/manifests -> ../manifests)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "out", "build")
    for name in ("images", "vitjob", "manifests", "ascend310_infer"):
        shutil.copytree(ROOT / name, dest / name, symlinks=True, ignore=skip)
    for name in ("pyproject.toml", "requirements.lock", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _buildah_plan(tmp_path: Path, tree: Path = ROOT, *args: str, **env: str) -> tuple[list[str], list[str]]:
    """A buildah dry run of the cpu image with a local base: the bud argv and the stdout lines."""
    run_env = {"VITJOB_IMAGE_CACHE": str(tmp_path / "cache"), "VITJOB_APT_ETC": str(tmp_path / "apt")}
    if not (tmp_path / "apt").exists():
        _apt_etc(tmp_path / "apt")
    proc = _dry_run(
        "--kind", "cpu", "--base", "local", "--oci-archive", *args,
        env={**run_env, **env}, builder="buildah", script=tree / "images" / "build.sh",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    bud = [shlex.split(line) for line in lines if line.startswith("buildah bud ")]
    assert len(bud) == 1, proc.stdout
    return bud[0], lines


def _flag(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def _key(bud: list[str]) -> str:
    (label,) = [v for v in _flag(bud, "--label") if v.startswith("vitjob.image.inputs-sha256=")]
    return label.split("=", 1)[1]


def test_buildah_plan_builds_the_vitjob_images_name_on_the_local_base(tmp_path):
    bud, lines = _buildah_plan(tmp_path)
    assert bud[:2] == ["buildah", "bud"] and bud[-1] == str(ROOT)
    assert _flag(bud, "-t") == [images.default_image("cpu")]
    assert _flag(bud, "-f") == [str(IMAGES / "cpu" / "Dockerfile")]
    assert _flag(bud, "--ignorefile") == [str(IMAGES / "cpu" / "Dockerfile.dockerignore")]
    assert {"--layers", "--pull=never"} <= set(bud) and _flag(bud, "--isolation") == ["chroot"]
    args = dict(a.split("=", 1) for a in _flag(bud, "--build-arg"))
    assert set(args) == {"CPU_BASE_IMAGE", "VITJOB_UID"} and args["VITJOB_UID"] == _versions()["VITJOB_UID"]
    assert re.fullmatch(r"localhost/vitjob-base:bookworm-[0-9a-f]{16}", args["CPU_BASE_IMAGE"])
    assert "http://mirror.example/debian" in "\n".join(lines)  # debootstrap from the machine's mirror
    # --oci-archive: the last line is the cached archive, named by the image's input hash.
    key = _key(bud)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert lines[-1] == str(tmp_path / "cache" / f"cpu-{key[:16]}.oci.tar")


def test_buildah_cache_key_follows_the_images_inputs_only(tmp_path):
    tree = _tree(tmp_path / "tree")
    first, _ = _buildah_plan(tmp_path, tree)
    again, _ = _buildah_plan(tmp_path, tree)
    assert _key(again) == _key(first)  # deterministic
    keys = {_key(first)}
    for rel in KEY_INPUTS:
        path = tree / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        bud, _ = _buildah_plan(tmp_path, tree)
        assert _key(bud) not in keys, f"the cache key ignores {rel}"
        keys.add(_key(bud))
        path.write_bytes(original)
    for rel in NOT_KEY_INPUTS:
        path = tree / rel
        path.write_bytes(path.read_bytes() + b"\n# changed\n")
    (tree / "vitjob" / "__pycache__").mkdir(exist_ok=True)
    (tree / "vitjob" / "__pycache__" / "errors.cpython-311.pyc").write_bytes(b"\0")
    bud, _ = _buildah_plan(tmp_path, tree)
    assert _key(bud) == _key(first), "the cache key follows files the cpu image does not contain"
    # A pinned value the Dockerfile uses (the environment wins over versions.env) and the base.
    uid, _ = _buildah_plan(tmp_path, tree, VITJOB_UID="1001")
    assert _key(uid) not in keys
    other_mirror = tmp_path / "other"
    _apt_etc(other_mirror, DEBIAN_SOURCES.replace("mirror.example", "mirror2.example"))
    moved, _ = _buildah_plan(tmp_path, tree, VITJOB_APT_ETC=str(other_mirror))
    bases = [dict(a.split("=", 1) for a in _flag(b, "--build-arg"))["CPU_BASE_IMAGE"] for b in (first, moved)]
    assert bases[0] != bases[1], "the local base's tag does not follow its mirror"
    assert _key(moved) not in keys | {_key(uid)}


def test_buildah_options_are_checked(tmp_path):
    env = {"VITJOB_IMAGE_CACHE": str(tmp_path)}
    bad = [
        (("--kind", "cpu"), "podman", "--builder is docker or buildah"),
        (("--kind", "cpu", "--base", "nearby"), "buildah", "--base is auto, registry or local"),
        (("--kind", "gpu", "--base", "local"), "buildah", "the cpu image's base only"),
        (("--kind", "cpu", "--oci-archive"), "docker", "--oci-archive is made by the buildah builder"),
        (("--kind", "cpu", "--base", "local"), "docker", "--base is for the buildah builder"),
    ]
    for args, builder, message in bad:
        proc = _dry_run(*args, env=env, builder=builder)
        assert proc.returncode == 2 and message in proc.stderr, (args, builder, proc.stderr)


def test_oci_archive_chooses_buildah_without_builder_option(tmp_path):
    _apt_etc(tmp_path / "apt")
    env = {**os.environ, "VITJOB_IMAGE_CACHE": str(tmp_path / "c"), "VITJOB_APT_ETC": str(tmp_path / "apt")}
    proc = subprocess.run(
        ["bash", str(BUILD), "--dry-run", "--oci-archive", "--kind", "cpu", "--base", "local"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("buildah bud ") for line in proc.stdout.splitlines())
    assert proc.stdout.splitlines()[-1].endswith(".oci.tar")


# ---------------------------------------------------------------- a real build (slow)


def _root_with(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    reason = ""
    if os.geteuid() != 0:
        reason = "images/build.sh's buildah builder runs as root"
    elif missing:
        reason = f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"
    if reason:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


def _in_image(container: str, script: str) -> str:
    argv = ["buildah", "run", "--isolation", "chroot", container, "--", "sh", "-c", script]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{script}: {proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def cpu_archive() -> Path:
    """images/build.sh --kind cpu --oci-archive (seconds when cached, ~15 min cold on 2 cores)."""
    _root_with("apt-get")
    argv = ["bash", str(BUILD), "--kind", "cpu", "--oci-archive"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
    archive = Path(proc.stdout.splitlines()[-1])
    assert archive.is_absolute() and archive.is_file(), proc.stdout
    return archive


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_cpu_image_runs_vitjob_as_uid_1000(cpu_archive):
    image = images.default_image("cpu")
    container = subprocess.run(
        ["buildah", "from", "--pull=never", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        assert _in_image(container, "id -u; id -g") == "1000\n1000"
        assert _in_image(container, 'echo "$PATH"').startswith("/opt/venv/bin:")
        assert _in_image(container, "command -v python") == "/opt/venv/bin/python"
        assert _in_image(container, "vitjob --version").endswith(images.TAG)
        assert _in_image(container, "python -c 'import mindspore; print(mindspore.__version__)'") == "2.10.0"
        # The templates ship in the wheel (vitjob/manifests links to ../manifests).
        rendered = _in_image(container, "vitjob render --hw cpu --name smoke --no-validate")
        jobs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Job"]
        assert [j["metadata"]["name"] for j in jobs] == ["smoke-train"], rendered
        # No build secret stayed behind (each mount point is removed after its step).
        leftovers = "/etc/pip.conf /run/vitjob-* /etc/apt/apt.conf.d/99vitjob-build /run/secrets"
        assert _in_image(container, f"ls -d {leftovers} 2>/dev/null; true") == ""
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    inspect = ["buildah", "inspect", "--type", "image", image]
    config = json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
    config = config["Docker"]["config"]
    assert config["User"] == "1000:1000"  # numeric: runAsNonRoot can check it
    assert config["Entrypoint"] == ["vitjob", "launch"]
    assert not [e for e in config["Env"] if e.startswith("PIP_")]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cpu_archive_imports_into_containerd_under_the_vitjob_images_name(cpu_archive):
    _root_with("containerd", "ctr")
    with tarfile.open(cpu_archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
        assert names == [images.default_image("cpu")]
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digest}"))
    # A private containerd (never the node's /run/containerd): its own root, state and socket.
    work = Path(tempfile.mkdtemp(prefix="vitjob-ctd-", dir="/tmp"))
    sock = work / "containerd.sock"
    (work / "config.toml").write_text(
        f'version = 2\nroot = "{work}/root"\nstate = "{work}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n[debug]\n  address = "{sock}.debug"\n'
    )
    with open(work / "containerd.log", "w") as log_file:
        daemon = subprocess.Popen(
            ["containerd", "--config", str(work / "config.toml")], stdout=log_file, stderr=log_file
        )
    ctr = ["ctr", "--address", str(sock), "-n", "k8s.io"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            log = (work / "containerd.log").read_text()
            assert daemon.poll() is None and time.monotonic() < deadline, log
            time.sleep(0.2)
        subprocess.run([*ctr, "images", "import", str(cpu_archive)], check=True, capture_output=True)
        listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True, check=True)
        assert listed.stdout.split() == [images.default_image("cpu")]
        # Unpacked for the node's snapshotter (overlayfs), as the kubelet needs it. (Not `ctr run`: its shim
        # and FIFOs would use the node's default /run/containerd directories.)
        unpacked = subprocess.run([*ctr, "snapshots", "ls"], capture_output=True, text=True, check=True)
        committed = [line for line in unpacked.stdout.splitlines()[1:] if line.split()[-1] == "Committed"]
        assert len(committed) == len(manifest["layers"]), unpacked.stdout
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        subprocess.run(["umount", "-R", str(work / "root")], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- images/buildenv.py


@pytest.fixture(scope="module")
def buildenv():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vitjob_images_buildenv", IMAGES / "buildenv.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_dockerfile_mounts_every_build_secret_where_buildenv_points(buildenv):
    text = (IMAGES / "cpu" / "Dockerfile").read_text()
    mounts = re.findall(r"--mount=type=secret,id=([\w.-]+),target=(\S+)", text)
    assert dict(mounts) == buildenv.TARGETS and len(mounts) == len(buildenv.TARGETS)
    # Nothing of the machine's settings becomes an ARG or ENV of the image.
    assert not re.search(r"^(ARG|ENV)\s+(PIP_|APT_|SSL_|REQUESTS_)", text, re.M)


def test_pip_settings_keep_pips_precedence_and_only_network_keys(buildenv, tmp_path):
    first, second = tmp_path / "global.conf", tmp_path / "user.conf"
    first.write_text("[global]\nindex-url = https://a.example/simple\ntimeout = 5\nuser = true\n")
    second.write_text("[global]\ntimeout = 7\n[install]\nindex-url = https://b.example/simple\ntarget = /x\n")
    files = [first, second, tmp_path / "missing.conf"]
    assert buildenv.pip_settings(files, {}) == {"index-url": "https://b.example/simple", "timeout": "7"}
    env = {"PIP_INDEX_URL": "https://c.example/simple", "PIP_DEFAULT_TIMEOUT": "180", "PIP_TARGET": "/y"}
    assert buildenv.pip_settings(files, env) == {
        "index-url": "https://c.example/simple",
        "timeout": "7",
        "default-timeout": "180",
    }
    assert buildenv.pip_settings(files, {"PIP_CONFIG_FILE": os.devnull}) == {}


def test_build_secrets_are_private_and_read_by_pip_and_apt_as_meant(buildenv, tmp_path):
    cert = tmp_path / "corp-ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    wheels, empty = tmp_path / "wheels", tmp_path / "empty"
    wheels.mkdir(), empty.mkdir()
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"")
    env = {
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_CERT": str(cert),
        "PIP_FIND_LINKS": f"{wheels} {empty} https://w.example/links",
        "PIP_DEFAULT_TIMEOUT": "180",
    }
    apt_etc = _apt_etc(tmp_path / "apt")
    proxy = 'Acquire::http::Proxy "http://proxy.example:3128";'
    dump = "\n".join([proxy, 'Acquire::Check-Valid-Until "false";', 'APT::Foo "1";'])
    out = tmp_path / "out"
    secrets = buildenv.write_secrets(out, env, apt_etc, dump)
    assert set(secrets.files) == {"pip.conf", "pip-cert", "apt.conf", "apt-sources.list", "ca.crt"} or (
        not buildenv.SYSTEM_CA.is_file() and "ca.crt" not in secrets.files
    )
    assert secrets.volumes == [str(wheels)]  # the empty directory is left out, the URL kept
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700
    for sid in ("pip.conf", "pip-cert", "apt.conf"):
        assert secrets.files[sid].stat().st_mode & 0o777 == 0o600, sid
    assert secrets.files["pip-cert"].read_text() == cert.read_text()
    # pip itself reads the file as the build's /etc/pip.conf would be read.
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PIP_CONFIG_FILE": str(out / "pip.conf")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"global.cert='{buildenv.TARGETS['pip-cert']}'" in listed
    assert "global.default-timeout='180'" in listed
    assert f"global.find-links='{wheels}\\nhttps://w.example/links'" in listed  # pip shows a newline as \\n
    conf = secrets.files["apt.conf"].read_text()
    assert f'Dir::Etc::SourceList "{buildenv.TARGETS["apt-sources.list"]}";' in conf
    assert proxy in conf and "APT::Foo" not in conf
    signed = "[ signed-by=/usr/share/keyrings/debian-archive-keyring.gpg ]"
    assert secrets.files["apt-sources.list"].read_text().splitlines() == [
        f"deb {signed} http://mirror.example/debian bookworm main",
        f"deb {signed} http://mirror.example/debian bookworm-updates main",
        f"deb {signed} http://mirror.example/debian-security bookworm-security main",
    ]
    lines = secrets.lines()
    assert f"volume\t{wheels}" in lines
    assert f"secret\tpip.conf\t{secrets.files['pip.conf']}\t/etc/pip.conf" in lines


DEB822_EXAMPLE = """# sources.list(5), "DEB822-STYLE FORMAT"
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Architectures: amd64 arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no
"""


def test_deb822_sources_become_the_one_line_entries_apt_reads_the_same(buildenv, tmp_path):
    apt_etc = _apt_etc(tmp_path / "apt", DEB822_EXAMPLE)
    opts = "[ arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg ]"
    lines = [s.line() for s in buildenv.apt_sources(apt_etc)]
    assert lines == [
        f"{kind} {opts} http://deb.debian.org/debian {suite} main contrib"
        for kind in ("deb", "deb-src")
        for suite in ("bookworm", "bookworm-updates")
    ]
    assert [s.suite for s in buildenv.debian_sources(buildenv.apt_sources(apt_etc), "bookworm")] == [
        "bookworm",
        "bookworm-updates",
    ]
    # apt itself: both forms give the same downloads.
    apt_get = _tool("apt-get")
    (tmp_path / "one.list").write_text("\n".join(lines) + "\n")
    (tmp_path / "lists" / "partial").mkdir(parents=True)

    def uris(main: Path, parts: Path) -> list[str]:
        opts = [f"Dir::Etc::SourceList={main}", f"Dir::Etc::SourceParts={parts}"]
        opts.append(f"Dir::State::Lists={tmp_path}/lists")
        argv = [apt_get, *(a for o in opts for a in ("-o", o)), "update", "--print-uris"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        return sorted(proc.stdout.splitlines())

    from_deb822 = uris(tmp_path / "none.list", apt_etc / "sources.list.d")
    assert from_deb822 and from_deb822 == uris(tmp_path / "one.list", tmp_path / "no-parts")
    inline_key = DEB822_EXAMPLE.replace(
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n xx\n -----END PGP PUBLIC KEY BLOCK-----",
    )
    with pytest.raises(buildenv.BuildEnvError, match="inline key"):
        buildenv.apt_sources(_apt_etc(tmp_path / "inline", inline_key))
