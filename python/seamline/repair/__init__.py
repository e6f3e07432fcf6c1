"""Repair: plans (data) and the per-store writers that apply them safely."""

from seamline.repair.plan import RepairOutcome, RepairPlan, RepairWriter, version_numbers

__all__ = ["RepairOutcome", "RepairPlan", "RepairWriter", "version_numbers"]
