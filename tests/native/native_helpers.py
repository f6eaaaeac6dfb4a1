"""Fork helpers: privileged calls run in a child so the test process never changes identity."""
import os
import pickle
import traceback


def run_in_child(fn, *args):
    """Run fn(*args) in a forked child; return its (pickled) result or re-raise its exception."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(r)
            try:
                out = ("ok", fn(*args))
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out = ("exc", e, traceback.format_exc())
            with os.fdopen(w, "wb") as f:
                pickle.dump(out, f)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    out = pickle.loads(data)
    if out[0] == "exc":
        raise out[1]
    return out[1]


def proc_status():
    """Selected /proc/self/status fields as lists of ints / hex strings."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields
