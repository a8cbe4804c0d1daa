"""vitjob.launch.addresses.resolve_reachable against real sockets: a name whose record still points at a
previous pod (nothing listens there) is resolved again until its address accepts connections, as after a
job restart while cluster DNS serves the old record; a name that never does fails, naming both."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vitjob import constants as c
from vitjob.launch.addresses import ResolveError, resolve_reachable


@pytest.fixture
def listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_stale_record_gives_way_to_the_address_that_answers(tmp_path: Path, listener: int) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.2 job-worker-0.job\n")  # the earlier pod's address: nothing listens there
    env = {c.ENV_HOSTS_FILE: str(hosts)}
    waits = []

    def sleep(seconds: float) -> None:  # the record is updated while the pod waits
        waits.append(seconds)
        hosts.write_text("127.0.0.1 job-worker-0.job\n")

    ip = resolve_reachable("job-worker-0.job", listener, 30, env, sleep=sleep)
    assert ip == "127.0.0.1" and len(waits) == 1


def test_an_address_that_never_answers_fails_in_time_naming_it(tmp_path: Path, listener: int) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.2 job-worker-0.job\n")
    env = {c.ENV_HOSTS_FILE: str(hosts)}
    with pytest.raises(ResolveError, match=r"job-worker-0.job resolves to 127.0.0.2, but nothing accepted"):
        resolve_reachable("job-worker-0.job", listener, 2, env, what="pod 0")
