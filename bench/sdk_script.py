"""The baseline: what most cross-posting scripts do, on the atproto SDK.

For every post: log in with the app password, then create the record.
Run as a script (one process per post, as a CMS hook or cron job would call it)::

    python -m bench.sdk_script SERVICE HANDLE APP_PASSWORD TEXT

prints {"login_s", "create_s", "uri"} as JSON. `post_once` is the same, in-process.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from typing import Any


def post_once(service: str, handle: str, app_password: str, text: str, rkey: str | None = None) -> dict[str, Any]:
    """rkey: the stub PDS wants one (the real PDS makes one up when none is given)."""
    from atproto import Client

    t0 = time.perf_counter()
    client = Client(base_url=service)
    client.login(handle, app_password, fetch_bsky_profile=False)
    t1 = time.perf_counter()
    did = client._session.did  # noqa: SLF001 - `me` is None without the profile lookup
    record = {"$type": "app.bsky.feed.post", "text": text,
              "createdAt": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}
    data: dict[str, Any] = {"repo": did, "collection": "app.bsky.feed.post", "record": record}
    if rkey:
        data["rkey"] = rkey
    result = client.com.atproto.repo.create_record(data=data)
    t2 = time.perf_counter()
    client.request.close()
    return {"login_s": t1 - t0, "create_s": t2 - t1, "uri": result.uri}


if __name__ == "__main__":
    service, handle, app_password, text = sys.argv[1:5]
    print(json.dumps(post_once(service, handle, app_password, text)))
