"""icurt: a Ray-distributed platform for ICU deep learning on MIMIC-III."""

__version__ = "0.1.0"
