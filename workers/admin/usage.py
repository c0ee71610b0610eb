"""`/admin/v1/usage` and `/admin/v1/usage/summary`: recorded requests and their rollups.

Filters: `org_id`, `key_id`, `model`, `since` (inclusive), `until` (exclusive), and `period`
(`hourly`/`daily`) for the summary. Times are RFC3339 with any offset and are compared as
times (Gandalf compared the strings). Gandalf let a viewer read every organization's usage;
here `org_id` defaults to the caller's and another organization is refused, as for keys.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get

from app.domain import Forbidden, Identity, Permission
from storage import usage
from storage.db import Database
from storage.records import Listing, page
from workers.admin.payloads import AnyRequest, check_time, json_response, page_params
from workers.admin.rbac import caller


def _filters(request: AnyRequest, identity: Identity) -> usage.UsageFilters:
    params = request.query_params
    org = params.get("org_id") or identity.org_id
    if org != identity.org_id:
        raise Forbidden("cannot access resources outside your organization")
    since, until = params.get("since") or None, params.get("until") or None
    check_time(since, "since")
    check_time(until, "until")
    return usage.UsageFilters(
        org_id=org,
        key_id=params.get("key_id") or None,
        model=params.get("model") or None,
        since=since,
        until=until,
        period=params.get("period") or None,
    )


def usage_handlers(db: Database) -> list[Any]:
    @get("/usage")
    async def list_usage(request: AnyRequest) -> Response[bytes]:
        identity = await caller(request, db, Permission.VIEW_ALL_USAGE)
        filters = _filters(request, identity)
        offset, limit = page_params(request)
        rows, total = await db.read(usage.list_usage, filters, offset, limit)
        return json_response(page(rows, offset, limit, total))

    @get("/usage/summary")
    async def usage_summary(request: AnyRequest) -> Response[bytes]:
        identity = await caller(request, db, Permission.VIEW_ALL_USAGE)
        rows = await db.read(usage.usage_summary, _filters(request, identity))
        return json_response(Listing(rows))

    return [list_usage, usage_summary]
