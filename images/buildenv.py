"""The build machine's package-client settings for one image build (what images/build.sh gives buildah).

A container build does not see the host's pip and apt configuration: pip's config files and ``PIP_*``
environment, the certificate they name, apt's sources and ``Acquire::`` options, the CA bundle. This
module writes them into a private directory as *build secrets*. ``images/cpu/Dockerfile`` mounts each
one (``RUN --mount=type=secret,id=ID,target=TARGET``) only for the RUN step that needs it, so they are
used by pip and apt during the build and are never part of a layer or of the image's history. A build
without them (a plain ``docker build``) uses the base image's own settings. It also derives, from the
machine's apt sources, the mirror and the sources of the local Debian base (see images/build.sh).

    python3 images/buildenv.py secrets DIR           write DIR/*, print one TAB-separated line each:
                                                     secret ID SRC TARGET | volume PATH
    python3 images/buildenv.py debian-mirror SUITE   the first mirror URI serving SUITE
    python3 images/buildenv.py debian-sources SUITE  the machine's SUITE, -updates, -security sources
"""

from __future__ import annotations

import configparser
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("buildenv")

# Secret id -> where the Dockerfile mounts it. Every target is a path the base image does not have:
# buildah removes a secret's mount point after the step, so a target that existed would be deleted.
TARGETS: dict[str, str] = {
    "pip.conf": "/etc/pip.conf",
    "pip-cert": "/run/vitjob-pip-cert",
    "pip-client-cert": "/run/vitjob-pip-client-cert",
    "apt.conf": "/etc/apt/apt.conf.d/99vitjob-build",
    "apt-sources.list": "/run/vitjob-apt-sources.list",
    "ca.crt": "/run/vitjob-ca.crt",
}

# pip settings that say how pip reaches packages; anything else (PIP_USER, PIP_TARGET, ...) would change
# what the image installs, so it is left out.
PIP_KEYS = frozenset(
    {
        "index-url",
        "extra-index-url",
        "find-links",
        "no-index",
        "trusted-host",
        "cert",
        "client-cert",
        "proxy",
        "timeout",
        "default-timeout",
        "retries",
        "disable-pip-version-check",
        "keyring-provider",
    }
)
PIP_SECTIONS = ("global", "install")

# apt options copied from the machine (apt-config dump): transport, proxy and validity settings.
APT_PREFIXES = (
    "Acquire::http::",
    "Acquire::https::",
    "Acquire::ftp::",
    "Acquire::Check-Valid-Until ",
    "Acquire::Check-Date ",
    "Acquire::Retries ",
    "Acquire::ForceIPv4 ",
    "Acquire::ForceIPv6 ",
)
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")

# deb822 field -> one-line option name, where they differ (sources.list(5)).
DEB822_OPTION_NAMES = {"architectures": "arch", "languages": "lang", "targets": "target"}
DEB822_STRUCTURE = {"types", "uris", "suites", "components", "enabled"}


class BuildEnvError(Exception):
    """The machine's package-client configuration cannot be handed to a build."""


@dataclass(frozen=True)
class AptSource:
    """One ``deb URI SUITE COMPONENTS`` entry with its options (sources.list(5))."""

    kind: str
    uri: str
    suite: str
    components: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in self.options)
        parts = [self.kind, f"[ {opts} ]" if opts else "", self.uri, self.suite, *self.components]
        return " ".join(p for p in parts if p)


@dataclass
class Secrets:
    """The files written for a build: secret id -> file, plus host directories to mount read-only."""

    files: dict[str, Path] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"secret\t{sid}\t{path}\t{TARGETS[sid]}" for sid, path in self.files.items()]
        return out + [f"volume\t{path}" for path in self.volumes]


# ---------------------------------------------------------------- pip


def pip_config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """pip's configuration files in the order pip lets them override each other (later ones win):
    global, user (skipped when PIP_CONFIG_FILE names a file), site (the active venv), PIP_CONFIG_FILE."""
    named = Path(env["PIP_CONFIG_FILE"]) if env.get("PIP_CONFIG_FILE") else None
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs if d]
    files.append(Path("/etc/pip.conf"))
    if not (named and named.exists()):
        files.append(home / ".pip" / "pip.conf")
        files.append(Path(env.get("XDG_CONFIG_HOME", str(home / ".config"))) / "pip" / "pip.conf")
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
    if named:
        files.append(named)
    return files


def pip_settings(files: Iterable[Path], env: Mapping[str, str]) -> dict[str, str]:
    """The machine's effective pip settings of PIP_KEYS: config files in order, then PIP_* variables."""
    settings: dict[str, str] = {}
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        files = ()
    for path in files:
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except configparser.Error as exc:
            raise BuildEnvError(f"{path} is not a valid pip configuration file: {exc}") from None
        for section in PIP_SECTIONS:
            if parser.has_section(section):
                settings.update((k, v) for k, v in parser.items(section) if k in PIP_KEYS)
    for name, value in env.items():
        key = name[4:].lower().replace("_", "-") if name.startswith("PIP_") else ""
        if key in PIP_KEYS:
            settings[key] = value
    return settings


def _local_links(value: str) -> tuple[list[str], list[str]]:
    """Split find-links entries into those kept and the local directories among them to mount."""
    kept, mounts = [], []
    for entry in value.split():
        path = Path(entry.removeprefix("file://"))
        if "://" in entry and not entry.startswith("file://"):
            kept.append(entry)
        elif path.is_dir() and any(path.iterdir()):
            if "," in str(path) or ":" in str(path):
                raise BuildEnvError(f"find-links directory {path}: a path with ',' or ':' cannot be mounted")
            kept.append(str(path))
            mounts.append(str(path))
        else:
            log.info("find-links %s left out of the build: no such directory or it is empty", entry)
    return kept, mounts


def write_pip(settings: Mapping[str, str], out: Path, secrets: Secrets) -> None:
    """pip.conf for the build: the certificates it names are secrets of their own."""
    conf = dict(settings)
    for key, sid in (("cert", "pip-cert"), ("client-cert", "pip-client-cert")):
        if key not in conf:
            continue
        source = Path(conf[key])
        if not source.is_file():
            raise BuildEnvError(f"pip's {key} names {source}, which is not a file: fix pip's configuration")
        secrets.files[sid] = _copy(source, out / sid)
        conf[key] = TARGETS[sid]
    if "find-links" in conf:
        kept, mounts = _local_links(conf["find-links"])
        secrets.volumes.extend(mounts)
        if kept:
            conf["find-links"] = "\n".join(kept)
        else:
            del conf["find-links"]
    parser = configparser.RawConfigParser()
    parser["global"] = {k: v.replace("\n", "\n    ") for k, v in sorted(conf.items())}
    path = out / "pip.conf"
    with _private(path).open("w") as fh:
        fh.write("# The build machine's pip settings (images/buildenv.py): a build secret, not in a layer.\n")
        parser.write(fh)
    secrets.files["pip.conf"] = path


# ---------------------------------------------------------------- apt


def _one_line_sources(text: str, origin: str) -> list[AptSource]:
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        kind, rest = words[0], words[1:]
        options: list[tuple[str, str]] = []
        if rest and rest[0].startswith("["):
            opt_text = line[line.index("[") + 1 : line.index("]")]
            rest = line[line.index("]") + 1 :].split()
            options = [tuple(o.split("=", 1)) for o in opt_text.split()]  # type: ignore[misc]
        if kind not in ("deb", "deb-src") or len(rest) < 2:
            raise BuildEnvError(f"{origin}: cannot read the apt source line {raw!r}")
        sources.append(AptSource(kind, rest[0], rest[1], tuple(rest[2:]), tuple(options)))
    return sources


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif raw[0] in " \t" and key:
            current[key] += "\n" + raw.strip()
        else:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    return stanzas


def _deb822_sources(text: str, origin: str) -> list[AptSource]:
    sources = []
    for stanza in _deb822_stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        options = []
        for key, value in stanza.items():
            if key in DEB822_STRUCTURE:
                continue
            if "\n" in value:
                raise BuildEnvError(
                    f"{origin}: the multi-line {key} field (an inline key?) has no one-line form: "
                    "put the key in a file and name it in Signed-By"
                )
            options.append((DEB822_OPTION_NAMES.get(key, key), ",".join(value.split())))
        for kind in stanza.get("types", "").split():
            for uri in stanza.get("uris", "").split():
                for suite in stanza.get("suites", "").split():
                    comps = () if suite.endswith("/") else tuple(stanza.get("components", "").split())
                    sources.append(AptSource(kind, uri, suite, comps, tuple(options)))
    return sources


def apt_sources(apt_etc: Path) -> list[AptSource]:
    """Every source apt on this machine uses (sources.list, sources.list.d/*.list and *.sources)."""
    sources: list[AptSource] = []
    main = apt_etc / "sources.list"
    if main.is_file():
        sources += _one_line_sources(main.read_text(), str(main))
    parts = apt_etc / "sources.list.d"
    for path in sorted(parts.glob("*")) if parts.is_dir() else []:
        if path.suffix == ".list":
            sources += _one_line_sources(path.read_text(), str(path))
        elif path.suffix == ".sources":
            sources += _deb822_sources(path.read_text(), str(path))
    if not sources:
        raise BuildEnvError(f"no apt sources under {apt_etc}: the build needs the machine's Debian mirror")
    return sources


def apt_options(dump: str) -> tuple[list[str], str]:
    """The Acquire:: lines of ``apt-config dump`` to copy, and the CA file apt uses for https (or '')."""
    lines, ca = [], ""
    for line in dump.splitlines():
        if line.startswith("Acquire::https::CAInfo "):
            ca = line.split(" ", 1)[1].strip().rstrip(";").strip('"')
        elif line.startswith(APT_PREFIXES):
            lines.append(line)
    return lines, ca


def write_apt(apt_etc: Path, dump: str, out: Path, secrets: Secrets) -> None:
    """apt.conf (sources and CA of the build secrets only, the machine's Acquire options), sources, CA."""
    sources = [s for s in apt_sources(apt_etc) if s.kind == "deb"]
    listing = out / "apt-sources.list"
    listing.write_text("".join(s.line() + "\n" for s in sources))
    secrets.files["apt-sources.list"] = listing
    options, ca = apt_options(dump)
    ca_file = Path(ca) if ca else SYSTEM_CA
    conf = [
        "// The build machine's apt settings (images/buildenv.py); a build secret, never in a layer.",
        f'Dir::Etc::SourceList "{TARGETS["apt-sources.list"]}";',
        '// No source parts: the image\'s own sources.list.d is not used during the build.',
        'Dir::Etc::SourceParts "/run/vitjob-apt-no-source-parts";',
        *options,
    ]
    if ca_file.is_file():
        secrets.files["ca.crt"] = _copy(ca_file, out / "ca.crt")
        conf.append(f'Acquire::https::CAInfo "{TARGETS["ca.crt"]}";')
    elif ca:
        raise BuildEnvError(f"apt's Acquire::https::CAInfo names {ca}, which is not a file")
    path = out / "apt.conf"
    _private(path).write_text("\n".join(conf) + "\n")
    secrets.files["apt.conf"] = path


def debian_sources(sources: Iterable[AptSource], suite: str) -> list[AptSource]:
    """The machine's ``deb`` sources of a Debian release: SUITE, SUITE-updates, SUITE-security."""
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    found = [s for s in sources if s.kind == "deb" and s.suite in wanted]
    if not any(s.suite == suite for s in found):
        raise BuildEnvError(f"apt on this machine has no '{suite}' source: add a Debian {suite} mirror")
    return found


# ---------------------------------------------------------------- files


def _private(path: Path) -> Path:
    path.touch(mode=0o600)
    path.chmod(0o600)
    return path


def _copy(source: Path, dest: Path) -> Path:
    shutil.copyfile(source, _private(dest))
    return dest


def write_secrets(out: Path, env: Mapping[str, str], apt_etc: Path, apt_dump: str) -> Secrets:
    """Write every build secret into ``out`` (created private) and say what was written."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.chmod(0o700)
    secrets = Secrets()
    home = Path(env.get("HOME", str(Path.home())))
    write_pip(pip_settings(pip_config_files(env, home), env), out, secrets)
    write_apt(apt_etc, apt_dump, out, secrets)
    return secrets


def _apt_dump() -> str:
    if shutil.which("apt-config") is None:
        return ""
    return subprocess.run(["apt-config", "dump"], capture_output=True, text=True, check=True).stdout


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="images/buildenv.py: %(message)s")
    apt_etc = Path(os.environ.get("VITJOB_APT_ETC", "/etc/apt"))
    try:
        if len(argv) == 2 and argv[0] == "secrets":
            print("\n".join(write_secrets(Path(argv[1]), os.environ, apt_etc, _apt_dump()).lines()))
        elif len(argv) == 2 and argv[0] in ("debian-mirror", "debian-sources"):
            found = debian_sources(apt_sources(apt_etc), argv[1])
            if argv[0] == "debian-mirror":
                print(next(s.uri for s in found if s.suite == argv[1]))
            else:
                print("\n".join(s.line() for s in found))
        else:
            print(__doc__.split("\n\n")[-1].rstrip(), file=sys.stderr)
            return 2
    except BuildEnvError as exc:
        print(f"images/buildenv.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
