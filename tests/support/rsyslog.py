"""Private rsyslog instances for a test: a collector (imrelp on 127.0.0.1 -> ompgsql) and
senders (a private imuxsock socket -> omrelp), each started from the configuration shipped
in packaging/rsyslog/ with only the addresses, ports, paths and names replaced, run in the
foreground (``-n``) and stopped by pid.

``reliable=False`` builds a sender with rsyslog's defaults instead (the shipped action
without its queue and retry settings): the configuration that loses lines while the
collector is down.
"""
import os
import re
import shutil
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "packaging", "rsyslog")
RSYSLOGD = "/usr/sbin/rsyslogd"


class Rsyslog:
    def __init__(self, name, directory, conf, proc, socket=None, port=None):
        self.name, self.dir, self.conf, self.proc = name, directory, conf, proc
        self.socket, self.port = socket, port

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            with open(os.path.join(self.dir, "rsyslogd.out"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, kill=False):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def available():
    """None, or why rsyslog cannot run here."""
    for path, package in ((RSYSLOGD, "rsyslog"),
                          ("/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so", "rsyslog-relp"),
                          ("/usr/lib/x86_64-linux-gnu/rsyslog/ompgsql.so", "rsyslog-pgsql")):
        if not os.path.exists(path):
            return f"{package} is not installed"
    return None


def _shipped(name):
    with open(os.path.join(SHIPPED, name)) as f:
        return f.read()


def _run(name, directory, text, **extra):
    os.makedirs(os.path.join(directory, "work"), exist_ok=True)
    conf = os.path.join(directory, "rsyslog.conf")
    with open(conf, "w") as f:
        f.write(text)
    subprocess.run([RSYSLOGD, "-N1", "-f", conf], check=True, capture_output=True, timeout=60)
    out = open(os.path.join(directory, "rsyslogd.out"), "ab")
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", conf, "-i", os.path.join(directory, "pid")],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=directory)
    out.close()
    return Rsyslog(name, directory, conf, proc, **extra)


def _global(directory, hostname=None):
    host = f' localHostname="{hostname}"' if hostname else ""
    return (f'global(maxMessageSize="64k" workDirectory="{directory}/work"{host})\n'
            'module(load="imuxsock" SysSock.Use="off")\n')


def collector(directory, relp_port, pg_port, db, user="postgres", password="unused"):
    """The shipped collector on 127.0.0.1:relp_port, inserting into ``db``."""
    text = _shipped("glexec-audit-collector.conf")
    text = text.replace('input(type="imrelp" port="2514"',
                        f'input(type="imrelp" address="127.0.0.1" port="{relp_port}"')
    text = text.replace('server="127.0.0.1" port="5432" db="glexec_site"',
                        f'server="127.0.0.1" port="{pg_port}" db="{db}"')
    text = text.replace('uid="rsyslog" pwd="change-me"', f'uid="{user}" pwd="{password}"')
    assert f'port="{relp_port}"' in text and f'db="{db}"' in text, "shipped collector changed"
    os.makedirs(directory, exist_ok=True)
    return _run("collector", directory, _global(directory) + text, port=relp_port)


def sender(directory, hostname, relp_port, reliable=True):
    """The shipped sender for node ``hostname``, reading a private socket
    (``<directory>/log.sock``, instead of /dev/log) and forwarding to 127.0.0.1:relp_port."""
    text = _shipped("glexec-audit-sender.conf")
    text = text.replace('target="collector.example.org" port="2514"',
                        f'target="127.0.0.1" port="{relp_port}"')
    assert f'port="{relp_port}"' in text, "shipped sender changed"
    if not reliable:
        text = re.sub(r'\n\s*(queue\.[a-zA-Z]+|action\.resume[a-zA-Z]+)="[^"]*"', "", text)
        assert "queue." not in text.split("action(", 1)[1].split(")", 1)[0]
    os.makedirs(directory, exist_ok=True)
    os.chmod(os.path.dirname(directory), 0o755)       # like /dev/log: anyone can reach it
    os.chmod(directory, 0o755)
    sock = os.path.join(directory, "log.sock")
    head = _global(directory, hostname) + (
        f'input(type="imuxsock" Socket="{sock}" Annotate="on" ParseTrusted="on" '
        'CreatePath="on")\n')
    r = _run(hostname, directory, head + text, socket=sock, port=relp_port)
    deadline = time.monotonic() + 15
    while not os.path.exists(sock):
        if time.monotonic() > deadline or r.proc.poll() is not None:
            r.stop()
            raise RuntimeError(f"rsyslog sender did not start: {r.log()}")
        time.sleep(0.05)
    return r


def start_again(r):
    """The same instance (configuration, work directory and its saved queues) once more."""
    r.stop()
    again = _run(r.name, r.dir, open(r.conf).read(), socket=r.socket, port=r.port)
    r.proc = again.proc
    return r


def remove(*instances):
    for r in instances:
        if r is not None:
            r.stop()
            shutil.rmtree(r.dir, ignore_errors=True)
