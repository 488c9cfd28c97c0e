"""What a plain ``pip install donjon`` brings, read from the installed metadata."""

from importlib.metadata import requires

from packaging.requirements import Requirement

HEAVY = {
    "torch",
    "tensorflow",
    "keras",
    "fastapi",
    "starlette",
    "uvicorn",
    "scikit-learn",
    "sqlalchemy",
    "onnxruntime",
    "jax",
}


def test_the_core_install_pulls_in_no_ml_framework_or_web_server() -> None:
    core = [Requirement(r) for r in requires("donjon") or [] if "extra ==" not in r]
    assert core, "donjon declares no core dependencies at all"
    assert {r.name.lower() for r in core}.isdisjoint(HEAVY)


def test_torch_is_pinned_wherever_it_is_required() -> None:
    for text in requires("donjon") or []:
        req = Requirement(text)
        if req.name == "torch":
            assert str(req.specifier) == "==2.13.0", text
