"""The throughput baseline: a bare httpx loop of createRecord calls against the stub PDS
(one createSession, then N creates on one keep-alive connection; no database, no SDK).

    python -m bench.rawclient STUB_URL HANDLE N START_AT

waits until time.time() >= START_AT, then prints {"start", "end", "n", "cpu_s", "errors"} as JSON.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    import httpx

    url, handle, n, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with httpx.Client(base_url=url, timeout=10.0) as client:
        session = client.post("/xrpc/com.atproto.server.createSession",
                              json={"identifier": handle, "password": "pw"}).json()
        headers = {"Authorization": f"Bearer {session['accessJwt']}"}
        did = session["did"]
        pause = start_at - time.time()
        if pause > 0:
            time.sleep(pause)
        c0, t0 = time.process_time(), time.time()
        errors = 0
        for i in range(n):
            body = {"repo": did, "collection": "app.bsky.feed.post", "rkey": f"r{i:012d}",
                    "record": {"$type": "app.bsky.feed.post", "text": f"raw {i}", "createdAt": "2026-01-01T00:00:00Z"}}
            r = client.post("/xrpc/com.atproto.repo.createRecord", json=body, headers=headers)
            errors += r.status_code != 200
        t1, c1 = time.time(), time.process_time()
    print(json.dumps({"start": t0, "end": t1, "n": n, "cpu_s": c1 - c0, "errors": errors}))


if __name__ == "__main__":
    main()
