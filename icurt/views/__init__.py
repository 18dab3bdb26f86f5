"""Run views: a completed run of each stage opened as Python values (icurt/api.py returns them).

One class per stage, in the module of its kind of output; each opener calls the one reader of its
file format (icurt/dataset.py, model/checkpoint.py, attack/results.py, ...), never a second one."""

from __future__ import annotations

from icurt.views.base import VIEWS, RunView, view_class, view_of

__all__ = ["RunView", "VIEWS", "view_class", "view_of"]
