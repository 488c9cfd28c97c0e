"""The scanner's detection rules (ids never change meaning)."""

from __future__ import annotations

from donjon.core.rules import Rule
from donjon.core.severity import Severity

_SUPPLY = ("AML.T0010.003", "AML.T0011.000")
_MALWARE = ("AML.T0010.003", "AML.T0011.000", "AML.T0018.002")
_OWASP = ("ML06", "LLM03")
_MITIGATE = ("AML.M0016", "AML.M0014")


def _rule(
    rule_id: str,
    title: str,
    description: str,
    remediation: str,
    severity: Severity,
    atlas: tuple[str, ...] = _SUPPLY,
) -> Rule:
    return Rule(rule_id, title, description, remediation, severity, atlas, _OWASP, _MITIGATE)


_DO_NOT_LOAD = (
    "Do not load this file. Obtain the model from a trusted source, or convert it to a "
    "format that carries no code (safetensors) in an isolated environment."
)
_REVIEW = (
    "Review the named callable. If it is safe for your framework, add it to "
    "`scan.allow` in the settings; otherwise treat the file as hostile."
)

PKL_DANGEROUS = _rule(
    "DJ-PKL-001",
    "Pickle references a dangerous callable",
    "The pickle imports a callable on the deny-list (process, file, network, import machinery, "
    "code objects, eval/exec, or a gadget function reported in public scanner bypasses). "
    "Unpickling it runs that callable.",
    _DO_NOT_LOAD,
    Severity.CRITICAL,
    _MALWARE,
)
PKL_UNKNOWN = _rule(
    "DJ-PKL-002",
    "Pickle references a callable outside the allow-list",
    "The pickle imports a callable that no framework allow-list knows. Unpickling imports its "
    "module and may call it; unknown callables are how deny-list bypasses work.",
    _REVIEW,
    Severity.MEDIUM,
)
PKL_MALFORMED = _rule(
    "DJ-PKL-003",
    "Malformed or truncated pickle",
    "The pickle stream is malformed, truncated or ends without STOP. Loaders and scanners "
    "disagree on such streams, which attackers use to hide payloads; the scan reports what it "
    "saw up to and beyond the fault.",
    _DO_NOT_LOAD,
    Severity.MEDIUM,
)
PKL_UNRESOLVED = _rule(
    "DJ-PKL-004",
    "Pickle builds an import target or callable the scanner cannot resolve",
    "A GLOBAL/STACK_GLOBAL name is computed at load time, an extension-registry code (EXT) is "
    "used, or a value produced by an earlier call is itself called. Benign framework pickles "
    "never do this; it is how name-building and getattr-chain bypasses work.",
    _DO_NOT_LOAD,
    Severity.HIGH,
    _MALWARE,
)
PKL_STATE = _rule(
    "DJ-PKL-005",
    "Pickle state overrides special attributes",
    "BUILD sets dunder attributes (__reduce__, __class__, __setstate__, __dict__ ...) on an "
    "object, a known way to redirect behaviour after loading.",
    _DO_NOT_LOAD,
    Severity.HIGH,
    _MALWARE,
)
PKL_BOUND = _rule(
    "DJ-PKL-006",
    "Pickle analysis stopped at a bound",
    "The pickle exceeded an analysis bound (opcode count, memo size, stack or nesting depth, "
    "time budget). The file was not fully analysed, so it is not known to be safe.",
    "Raise the bound in `[scan]` settings if the file is trusted, or treat it as hostile.",
    Severity.MEDIUM,
)
PKL_OBJECT_ARRAY = _rule(
    "DJ-PKL-007",
    "NumPy array of Python objects",
    "An .npy/.npz member stores an object array: loading it with allow_pickle unpickles the "
    "embedded stream (analysed separately).",
    "Prefer plain numeric arrays; load object arrays only from trusted sources.",
    Severity.LOW,
)

ARC_TRAVERSAL = _rule(
    "DJ-ARC-001",
    "Archive member escapes the extraction folder",
    "An archive member name is absolute, contains '..' components or a drive letter, so "
    "extracting it writes outside the target folder.",
    "Do not extract the archive; rebuild it from trusted files.",
    Severity.HIGH,
    _MALWARE,
)
ARC_LINK = _rule(
    "DJ-ARC-002",
    "Archive member is a link",
    "An archive holds a symbolic or hard link (or a special file); extraction can overwrite or "
    "read files outside the target folder.",
    "Do not extract the archive; rebuild it without links.",
    Severity.HIGH,
)
ARC_BOMB = _rule(
    "DJ-ARC-003",
    "Archive is a decompression bomb",
    "A member's compression ratio or the archive's total decompressed size exceeds the bounds: "
    "extracting it would exhaust memory or disk.",
    "Do not extract the archive.",
    Severity.HIGH,
    ("AML.T0010.003", "AML.T0029"),
)
ARC_LIMIT = _rule(
    "DJ-ARC-004",
    "Archive exceeds a scan bound",
    "The archive nests too deeply or holds too many members; what lies beyond the bound was "
    "not analysed.",
    "Raise the bound in `[scan]` settings if the archive is trusted, or treat it as hostile.",
    Severity.MEDIUM,
)
ARC_MALFORMED = _rule(
    "DJ-ARC-005",
    "Malformed or ambiguous archive structure",
    "The archive has bad CRCs, local headers that disagree with the central directory, "
    "duplicate member names, encryption flags or unreadable records. Different readers see "
    "different contents in such files, a known way to slip payloads past scanners.",
    _DO_NOT_LOAD,
    Severity.MEDIUM,
)

KER_LAMBDA = _rule(
    "DJ-KER-001",
    "Keras model carries executable code",
    "A Keras config holds a Lambda layer or marshalled Python bytecode; loading the model "
    "(with safe_mode off, or in old Keras) runs it.",
    _DO_NOT_LOAD,
    Severity.HIGH,
    _MALWARE,
)
KER_DANGEROUS = _rule(
    "DJ-KER-002",
    "Keras config names a dangerous module or function",
    "A layer, object or function in the Keras config resolves to a deny-listed callable "
    "(the safe_mode bypass class of CVE-2025-1550).",
    _DO_NOT_LOAD,
    Severity.CRITICAL,
    _MALWARE,
)
KER_CUSTOM = _rule(
    "DJ-KER-003",
    "Keras config names a custom object outside Keras",
    "A config entry names a module outside keras / tensorflow; loading imports it.",
    _REVIEW,
    Severity.MEDIUM,
)
KER_MALFORMED = _rule(
    "DJ-KER-004",
    "Unreadable Keras model config",
    "The Keras archive or HDF5 file has no readable model config.",
    _DO_NOT_LOAD,
    Severity.MEDIUM,
)

TF_FILE_OPS = _rule(
    "DJ-TF-001",
    "TensorFlow graph uses file, process or Python ops",
    "The SavedModel graph contains ops that read or write files or run Python "
    "(ReadFile, WriteFile, MatchingFiles, PyFunc ...); running the model performs them.",
    _DO_NOT_LOAD,
    Severity.HIGH,
    _MALWARE,
)
TF_MALFORMED = _rule(
    "DJ-TF-002",
    "Malformed TensorFlow SavedModel",
    "saved_model.pb could not be parsed as a SavedModel protobuf.",
    _DO_NOT_LOAD,
    Severity.MEDIUM,
)

ONX_EXTERNAL = _rule(
    "DJ-ONX-001",
    "ONNX external data escapes the model folder",
    "A tensor's external-data location is absolute or leaves the model's folder; loading the "
    "model reads (and may disclose) arbitrary files.",
    _DO_NOT_LOAD,
    Severity.HIGH,
)
ONX_DOMAIN = _rule(
    "DJ-ONX-002",
    "ONNX model uses a custom operator domain",
    "A node or opset uses an operator domain outside the standard ONNX ones; running it needs "
    "a custom-op library that executes native code.",
    _REVIEW,
    Severity.MEDIUM,
)
ONX_MALFORMED = _rule(
    "DJ-ONX-003",
    "Malformed ONNX model",
    "The ONNX protobuf could not be parsed.",
    _DO_NOT_LOAD,
    Severity.MEDIUM,
)

TSC_FILE_OPS = _rule(
    "DJ-TSC-001",
    "TorchScript code reads or writes files, or reaches Python",
    "A TorchScript archive's code calls operators that read or write files (torch.save, "
    "torch.from_file), or names Python modules, imports or builtins (os, subprocess, eval, "
    "__import__ ...) that TorchScript never serialises; running the model performs them.",
    _DO_NOT_LOAD,
    Severity.HIGH,
    _MALWARE,
)
TSC_OPS = _rule(
    "DJ-TSC-002",
    "TorchScript code calls operators outside PyTorch's namespaces",
    "The code calls torch.ops of a namespace that PyTorch and its domain libraries do not "
    "register; running it needs a custom-op library that executes native code.",
    "Review the operator library. If you trust it, add `torch.ops.<namespace>` to `scan.allow`; "
    "otherwise treat the file as hostile.",
    Severity.MEDIUM,
)
TSC_MALFORMED = _rule(
    "DJ-TSC-003",
    "Unreadable TorchScript code",
    "A TorchScript code member is not valid source text (or is too large to analyse); "
    "torch.jit.load would refuse or read it differently than the scanner.",
    _DO_NOT_LOAD,
    Severity.MEDIUM,
)

STF_HEADER = _rule(
    "DJ-STF-001",
    "Invalid safetensors header",
    "The safetensors header is not valid: bad JSON, unknown dtype, offsets out of range, "
    "overlapping or mis-sized tensors, or a header length beyond the file or the 100 MB bound.",
    "Re-export the tensors with the safetensors library from a trusted copy.",
    Severity.MEDIUM,
)

GGF_TEMPLATE = _rule(
    "DJ-GGF-001",
    "GGUF chat template reaches Python internals",
    "tokenizer.chat_template is a Jinja template; this one touches dunder attributes, the attr "
    "filter or template globals that lead to Python objects (server-side template injection, "
    "as in CVE-2024-34359).",
    _DO_NOT_LOAD,
    Severity.HIGH,
    ("AML.T0010.003", "AML.T0011.000", "AML.T0051"),
)
GGF_MALFORMED = _rule(
    "DJ-GGF-002",
    "Malformed GGUF header",
    "The GGUF header or key-value section is truncated, malformed or exceeds the bounds.",
    _DO_NOT_LOAD,
    Severity.MEDIUM,
)

CFG_DANGEROUS = _rule(
    "DJ-CFG-001",
    "Config instantiates a dangerous callable",
    "A configuration names a deny-listed callable that its framework imports and calls when "
    "the model loads: a Hydra / OmegaConf `_target_` (NeMo archives, YAML or JSON configs, "
    "safetensors or GGUF metadata), or an MLflow `loader_module`.",
    _DO_NOT_LOAD,
    Severity.CRITICAL,
    _MALWARE,
)
CFG_UNKNOWN = _rule(
    "DJ-CFG-002",
    "Config instantiates a callable outside the allow-list",
    "A configuration names a callable (a `_target_`, an MLflow `loader_module`) that no "
    "allow-list knows, or one built at load time (an interpolation); the framework imports "
    "and calls it when the model loads.",
    _REVIEW,
    Severity.MEDIUM,
)
CFG_CODE = _rule(
    "DJ-CFG-003",
    "Model ships Python code that its loader runs",
    "The model brings its own Python: Hugging Face `auto_map` modules (run with "
    "`trust_remote_code`), MLflow `code` paths, TorchServe handlers, or Python source "
    "inside the archive. Loading the model runs that code; the source itself is judged on "
    "its own (`DJ-CFG-004` when it runs processes, opens the network or evaluates strings).",
    "Review the shipped code before loading the model with remote code enabled, and pin the "
    "reviewed revision.",
    Severity.LOW,
)
CFG_CODE_DANGEROUS = _rule(
    "DJ-CFG-004",
    "Shipped Python code runs processes, opens the network or evaluates code",
    "Python source shipped with the model runs processes (os.system, subprocess), opens the "
    "network (socket, urllib.request, requests), loads native code (ctypes) or evaluates "
    "strings (eval, exec, __import__).",
    _DO_NOT_LOAD,
    Severity.HIGH,
    _MALWARE,
)
CFG_DEPENDENCY = _rule(
    "DJ-CFG-005",
    "Model installs dependencies from outside the package index",
    "A requirements list or environment shipped with the model installs packages from URLs, "
    "version-control repositories, local paths or extra indexes (or TorchServe installs its "
    "requirements file): code chosen by the model's author runs at install time.",
    "Install the model's dependencies from your own index with pinned hashes.",
    Severity.MEDIUM,
)
ARC_NATIVE = _rule(
    "DJ-ARC-006",
    "Archive ships native code",
    "A model archive holds a shared library or executable (ELF, Mach-O, PE: .so, .dll, "
    ".dylib, AOTInductor packages); loading or serving the model may load it, which runs "
    "arbitrary machine code.",
    "Rebuild native code from reviewed source; load such archives only from trusted sources.",
    Severity.MEDIUM,
)

SCN_BUDGET = _rule(
    "DJ-SCN-001",
    "File not fully scanned",
    "The per-file time budget or a size bound ran out, or the file could not be read; the "
    "rest of the file was not analysed.",
    "Raise the bound in `[scan]` settings if the file is trusted, or treat it as hostile.",
    Severity.MEDIUM,
)
SCN_EXTENSION = _rule(
    "DJ-SCN-002",
    "File extension does not match its content",
    "The content is a code-carrying format (pickle ...) behind an extension that suggests "
    "otherwise; scanners that trust extensions skip such files.",
    "Rename the file after its real format, or treat it as hostile.",
    Severity.LOW,
)

RULES: tuple[Rule, ...] = (
    PKL_DANGEROUS,
    PKL_UNKNOWN,
    PKL_MALFORMED,
    PKL_UNRESOLVED,
    PKL_STATE,
    PKL_BOUND,
    PKL_OBJECT_ARRAY,
    ARC_TRAVERSAL,
    ARC_LINK,
    ARC_BOMB,
    ARC_LIMIT,
    ARC_MALFORMED,
    KER_LAMBDA,
    KER_DANGEROUS,
    KER_CUSTOM,
    KER_MALFORMED,
    TF_FILE_OPS,
    TF_MALFORMED,
    ONX_EXTERNAL,
    ONX_DOMAIN,
    ONX_MALFORMED,
    TSC_FILE_OPS,
    TSC_OPS,
    TSC_MALFORMED,
    STF_HEADER,
    GGF_TEMPLATE,
    GGF_MALFORMED,
    CFG_DANGEROUS,
    CFG_UNKNOWN,
    CFG_CODE,
    CFG_CODE_DANGEROUS,
    CFG_DEPENDENCY,
    ARC_NATIVE,
    SCN_BUDGET,
    SCN_EXTENSION,
)
