"""Wiring only: the one ``dg.Definitions`` of the code location."""

import dagster as dg

from meta_pipeline.assets.insights import insights_assets
from meta_pipeline.assets.objects import object_assets
from meta_pipeline.config import build_resources
from meta_pipeline.jobs import jobs
from meta_pipeline.schedules import schedules
from meta_pipeline.sensors import sensors


def build_definitions() -> dg.Definitions:
    """The code location, with resources read from the environment as it is now."""
    return dg.Definitions(
        assets=[*object_assets, *insights_assets],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=build_resources(),
    )


defs = build_definitions()
