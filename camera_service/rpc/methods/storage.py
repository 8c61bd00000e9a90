"""Storage methods: get_storage_info, set_retention_policy, cleanup_old_files
(api.md §4.24-4.26; media.md §5.3, §5.5).

The handlers are thin: ``StorageService`` measures and scans, and its ``retention`` object
owns the policy, its persistence and the single-flight sweep.
"""

from __future__ import annotations

from typing import Any

from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.params import Param, ParamProblem, int_range, one_of
from camera_service.rpc.registry import MethodRegistry
from camera_service.storage.retention import AGE, MANUAL, MAX_SIZE_GB, SIZE
from camera_service.storage.service import StorageService, internal_failure


def _size_range(value: float) -> None:
    if not 0 < value <= MAX_SIZE_GB:
        raise ParamProblem("range", f"must be a number > 0 and <= {MAX_SIZE_GB}")


# api.md §4.25, in the table's order (the first failing parameter is reported, §3.6).
RETENTION_PARAMS = (
    Param("policy_type", "string", required=True, check=one_of(AGE, SIZE, MANUAL),
          hint="Use age, size or manual"),
    Param("max_age_days", "integer", check=int_range(1, None), required_when=("policy_type", AGE),
          hint="Give a whole number of days > 0"),
    Param("max_size_gb", "number", check=_size_range, required_when=("policy_type", SIZE),
          hint="Give a size in GiB, > 0 and <= 100"),
    Param("enabled", "boolean", required=True, hint="Use true or false"),
)


def register(registry: MethodRegistry, storage: StorageService) -> None:
    retention = storage.retention

    async def get_storage_info(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Storage usage of the recordings filesystem and the two stores."""
        return await storage.storage_info()

    async def set_retention_policy(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Configure (and persist) automatic cleanup."""
        try:
            policy = await retention.set_policy(params["policy_type"], params["enabled"],
                                                params["max_age_days"], params["max_size_gb"])
        except OSError as error:
            raise internal_failure("Retention policy could not be saved",
                                   "Check the permissions of the state directory", str(error)) from None
        result: dict[str, Any] = {"policy_type": policy.policy_type}
        if policy.max_age_days is not None:
            result["max_age_days"] = policy.max_age_days
        if policy.max_size_gb is not None:
            result["max_size_gb"] = policy.max_size_gb
        result["enabled"] = policy.enabled
        result["message"] = "Retention policy configured successfully"
        return result

    async def cleanup_old_files(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Apply the retention policy now."""
        if not retention.policy.enabled:
            return {"cleanup_executed": False, "files_deleted": 0, "space_freed": 0,
                    "message": "Retention policy is disabled; no files deleted"}
        try:
            outcome = await retention.sweep(manual=True)
        except OSError as error:
            raise internal_failure("Media directories not found or inaccessible",
                                   "Check storage configuration and permissions", str(error)) from None
        if not outcome.executed:
            # Disabled while this call waited for a sweep that then did not run.
            return {"cleanup_executed": False, "files_deleted": 0, "space_freed": 0,
                    "message": "Retention policy is disabled; no files deleted"}
        return {"cleanup_executed": True, "files_deleted": outcome.files_deleted,
                "space_freed": outcome.space_freed, "message": "Cleanup completed successfully"}

    registry.register("get_storage_info", get_storage_info)
    registry.register("set_retention_policy", set_retention_policy, RETENTION_PARAMS)
    registry.register("cleanup_old_files", cleanup_old_files)
