"""Child-process runners for model formats Donjon never loads in its own process.

Donjon's import contract forbids its package from importing ML runtimes
(onnxruntime, torch...): a hostile model file must not be parsed inside the
process that holds the keys and the ledger. These runners sit outside the
``donjon`` package and are started as separate processes (``python -m
donjon_runners.onnx FILE``) with nothing but the file and the rows.
"""
