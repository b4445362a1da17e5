"""Wiring only: the one ``dg.Definitions`` of the code location."""

import dagster as dg

defs = dg.Definitions(assets=[])
