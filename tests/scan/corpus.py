"""The scanner's test corpus, generated in code.

Malicious samples come from ``donjon.scan.samples`` (standard library only) plus
a few that need a library to build (7z, real HDF5, joblib array smuggling).
Benign samples are made with the real libraries: torch, scikit-learn, joblib,
numpy, safetensors, onnx, h5py, py7zr. Used by the tests and the benchmark.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from pathlib import Path

from donjon.scan.samples import benign_samples, families, write_samples
from donjon.scan.samples_pickle import _s, call, glob0, p2, shell


def smuggled_joblib() -> bytes:
    """A joblib-looking stream whose "array bytes" are opcodes that plain pickle.load runs."""
    command = shell()
    region = glob0("os", "system") + b"(" + _s(command) + b"tR0"
    if len(region) % 2:  # make the length even, then pad with no-op pairs (push None, pop)
        region = glob0("os", "system") + b"(" + _s(command + " ") + b"tR0"
    while len(region) % 8:
        region += b"N0"
    count = len(region) // 8
    dtype = (
        glob0("numpy", "dtype")
        + b"("
        + _s("f8")
        + b"\x89\x88tR(K\x03"
        + _s("<")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    wrapper = (
        glob0("joblib.numpy_pickle", "NumpyArrayWrapper")
        + b")\x81}("
        + _s("subclass")
        + glob0("numpy", "ndarray")
        + _s("shape")
        + b"K"
        + bytes([count])
        + b"\x85"
        + _s("order")
        + _s("C")
        + _s("dtype")
        + dtype
        + _s("allow_mmap")
        + b"\x89ub"
    )
    return b"\x80\x04" + wrapper + region + b"."


def library_malicious(folder: Path) -> dict[str, str]:
    """Malicious samples that need a third-party library to build; name -> family."""
    import h5py
    import py7zr

    out: dict[str, str] = {}
    evil = p2(call(glob0("os", "system"), shell()))
    archive = folder / "model_in_7z.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.writestr(evil, "archive/data.pkl")
    out[archive.name] = "7z"
    broken = folder / "truncated_in_7z.7z"
    with py7zr.SevenZipFile(broken, "w") as z:
        z.writestr(evil[:-3], "model.pkl")
    out[broken.name] = "7z"
    lam = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "Lambda",
                    "config": {"function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"},
                }
            ]
        },
    }
    h5 = folder / "keras_lambda.h5"
    with h5py.File(h5, "w") as f:
        f.attrs["model_config"] = json.dumps(lam)
        f.attrs["keras_version"] = "2.15.0"
        f.create_dataset("w", data=[1.0, 2.0])
    out[h5.name] = "keras"
    smuggled = folder / "joblib_smuggled_array.joblib"
    smuggled.write_bytes(smuggled_joblib())
    out[smuggled.name] = "compressed joblib"
    return out


def write_malicious(folder: Path) -> dict[Path, str]:
    """Every malicious sample under ``folder``; path -> technique family."""
    written = write_samples(folder)
    fam = families()
    out = {p: fam[p.relative_to(folder / "malicious").as_posix()] for p in written["malicious"]}
    extra = folder / "malicious"
    for name, family in library_malicious(extra).items():
        out[extra / name] = family
    for p in written["benign"]:
        p.unlink()
    return out


def write_benign(folder: Path) -> list[Path]:
    """Benign models made with the real libraries (and the stdlib benign samples)."""
    import h5py
    import joblib
    import numpy as np
    import onnx
    import py7zr
    import torch
    from onnx import TensorProto, helper
    from safetensors.torch import save_file
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    torch.save(net.state_dict(), folder / "state_dict.pt")
    torch.save(net, folder / "full_model.pt")
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(5, 4)).sum().backward()
    opt.step()
    torch.save(
        {"model": net.state_dict(), "optim": opt.state_dict(), "epoch": 1}, folder / "ckpt.pt"
    )
    torch.jit.script(net).save(str(folder / "scripted.pt"))
    torch.save(net.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(dict(net.state_dict()), str(folder / "model.safetensors"))
    torch.save(
        {"python": __import__("random").getstate(), "numpy": np.random.get_state(),
         "cpu": torch.random.get_rng_state()},
        folder / "rng_state.pth",
    )  # fmt: skip
    torch.save(
        {"sparse": torch.eye(3).to_sparse(), "bf16": torch.ones(2, dtype=torch.bfloat16)},
        folder / "tensors.pt",
    )
    x, y = load_iris(return_X_y=True)
    pipe = Pipeline(
        [("log", FunctionTransformer(np.log1p)), ("scale", StandardScaler()),
         ("clf", LogisticRegression(max_iter=300))]
    ).fit(x, y)  # fmt: skip
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    joblib.dump(pipe, folder / "pipe.joblib")
    joblib.dump(forest, folder / "forest.joblib")
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.RandomState(0)
    joblib.dump(
        GradientBoostingClassifier(n_estimators=2, random_state=rng).fit(x, y), folder / "gb.joblib"
    )
    joblib.dump(HistGradientBoostingClassifier(max_iter=2).fit(x, y), folder / "hgb.joblib")
    docs = ["alpha beta", "beta gamma", "gamma delta", "delta alpha"]
    tfidf = Pipeline([("tf", TfidfVectorizer()), ("lr", LogisticRegression())]).fit(
        docs, [0, 1, 0, 1]
    )
    (folder / "tfidf.pkl").write_bytes(pickle.dumps(tfidf))
    for method in ("zlib", "gzip", "bz2", "xz", "lzma"):
        joblib.dump(pipe, folder / f"pipe_{method}.joblib", compress=(method, 3))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (folder / f"forest_p{protocol}.pkl").write_bytes(pickle.dumps(forest, protocol=protocol))
    np.save(folder / "array.npy", np.arange(12.0).reshape(3, 4))
    np.savez_compressed(folder / "arrays.npz", a=np.arange(3), b=np.eye(2))
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])],
    )
    onnx.save(helper.make_model(graph), str(folder / "relu.onnx"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated
        torch.onnx.export(net, (torch.randn(1, 4),), str(folder / "exported.onnx"), dynamo=False)
    dense = {"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense",
             "config": {"units": 2, "activation": "relu"}}]}}  # fmt: skip
    with h5py.File(folder / "keras_dense.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(dense)
        f.create_dataset("w", data=np.ones((2, 2)))
    with py7zr.SevenZipFile(folder / "weights.7z", "w") as z:
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        z.writestr(buf.getvalue(), "state_dict.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data in benign_samples().items():
            path = folder / "stdlib" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return sorted(p for p in folder.rglob("*") if p.is_file())
