"""Iterative knowledge distillation for dense passage retrieval: the functions behind the workflow's rules."""

__version__ = "0.1.0"

#: config ``precision``'s values (schemas/config.schema.yaml; :mod:`pipeline.precision`)
PRECISIONS = ("auto", "fp32", "bf16")
#: the environment variable that carries a job's precision (``python -m pipeline STEP --precision P``) to
#: :mod:`pipeline.precision`, which reads it when first imported
PRECISION_ENVVAR = "PIPELINE_PRECISION"
