import dagster as dg

from meta_pipeline import definitions


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(definitions.defs)
