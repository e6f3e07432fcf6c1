"""Repair: plans (data) and applying them through the target store's writer (`seamline.stores`)."""

from seamline.repair.plan import RepairOutcome, RepairPlan
from seamline.stores._common import version_numbers
from seamline.stores.protocols import RepairWriter, WriteCounts

__all__ = ["RepairOutcome", "RepairPlan", "RepairWriter", "WriteCounts", "version_numbers"]
