#!/usr/bin/env python3
"""The baseline for scripts/bench-fetch.sh: images fetched the way the old Python tool does it.

One bbox search (no splitting), then for each image, one at a time: an entity call for its
thumbnail URL, then the download. Standard library only. Prints one line:
`sequential images=N seconds=S rate=R` for the first --sample images of the search.
"""
import argparse
import json
import os
import time
import urllib.parse
import urllib.request


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-url", required=True)
    ap.add_argument("--bbox", required=True)
    ap.add_argument("--sample", type=int, default=150)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    auth = {"Authorization": "OAuth " + os.environ["MAPILLARY_TOKEN"]}
    os.makedirs(a.out, exist_ok=True)
    start = time.monotonic()
    q = urllib.parse.urlencode({"bbox": a.bbox, "fields": "id", "limit": 2000})
    ids = [d["id"] for d in json.loads(get(f"{a.api_url}/images?{q}", auth))["data"]]
    n = 0
    for image_id in ids[: a.sample]:
        q = urllib.parse.urlencode({"fields": "id,captured_at,geometry,compass_angle,sequence,thumb_256_url"})
        meta = json.loads(get(f"{a.api_url}/{image_id}?{q}", auth))
        data = get(meta["thumb_256_url"])
        with open(os.path.join(a.out, f"{image_id}.jpg"), "wb") as f:
            f.write(data)
        meta.pop("thumb_256_url", None)  # a signed URL is a secret: never stored
        with open(os.path.join(a.out, f"{image_id}.json"), "w") as f:
            json.dump(meta, f)
        n += 1
    secs = time.monotonic() - start
    print(f"sequential images={n} seconds={secs:.2f} rate={n / secs:.2f} search_results={len(ids)}")


if __name__ == "__main__":
    main()
