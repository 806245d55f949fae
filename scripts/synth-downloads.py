#!/usr/bin/env python3
"""Writes a synthetic downloads folder (the `mlyexport fetch` layout) for
tests and benchmarks: N images' `<grid>/<id>.json` files, a run record, and
optionally a CSV of the same points (for the ogr2ogr comparison).

usage: synth-downloads.py OUT N [--grids K] [--csv PATH]
No JPEGs are written (layers --no-exif reads metadata only)."""
import json, math, multiprocessing, os, random, sys

PER_SEQ = 50
CHUNK = 20_000
T0 = 1_600_000_000_000

def write_chunk(job):
    """Writes images lo..hi; returns their CSV lines."""
    out, grids, angles, lo, hi, want_csv = job
    k = len(grids)
    csv = []
    for i in range(lo, hi):
        g = grids[(i // PER_SEQ) % k]
        b = g["bbox"]
        seq = f"seq{i // PER_SEQ:07d}"
        step = i % PER_SEQ
        lon = b[0] + (b[2] - b[0]) * ((i // PER_SEQ * 0.618) % 1)
        lat = b[1] + (b[3] - b[1]) * (step + 0.5) / PER_SEQ
        iid = 1_000_000_000_000 + i
        t = T0 + (i // PER_SEQ) * 86_400_000 + step * 2000
        ang = angles[i - lo]
        pano = (i // PER_SEQ) % 10 == 0
        rec = {
            "id": str(iid), "captured_at": t,
            "geometry": {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]},
            "computed_geometry": {"type": "Point", "coordinates": [round(lon + 0.000005, 7), round(lat, 7)]},
            "compass_angle": round(ang, 3), "computed_compass_angle": round(ang + 1, 3),
            "altitude": 40.5, "sequence": seq, "is_pano": pano, "camera_type": "spherical" if pano else "perspective",
            "make": "GoPro", "model": "Max", "creator": {"username": f"user{(i // PER_SEQ) % 7}", "id": str(100 + (i // PER_SEQ) % 7)},
            "width": 4000, "height": 3000,
            "mlyexport": {"schema_version": 1, "grid": g["grid"], "size": "1024", "file": f"{iid}.jpg",
                          "bytes": 123456, "sha256": "0" * 64, "pixel_width": 1024, "pixel_height": 768,
                          "downloaded_at": "2024-01-01T00:00:00Z", "tool_version": "0.1.0"},
        }
        with open(os.path.join(out, g["grid"], f"{iid}.json"), "w") as f:
            f.write(json.dumps(rec))
        if want_csv:
            csv.append(f"{iid},{lon + 0.000005:.7f},{lat:.7f},{seq},{t},{ang + 1:.3f},{int(pano)},{g['grid']}\n")
    return "".join(csv)

def main():
    args = sys.argv[1:]
    out, n = args[0], int(args[1])
    k = int(args[args.index("--grids") + 1]) if "--grids" in args else 16
    csv_path = args[args.index("--csv") + 1] if "--csv" in args else None
    rnd = random.Random(42)
    side = int(math.sqrt(k))
    k = side * side
    lon0, lat0, cell = 13.30, 52.45, 0.02
    grids = []
    for r in range(side):
        for c in range(side):
            gid = str(r * side + c + 1)
            # row 1 is the northern-most
            b = [lon0 + c * cell, lat0 + (side - 1 - r) * cell, lon0 + (c + 1) * cell, lat0 + (side - r) * cell]
            grids.append({"grid": gid, "bbox": [round(x, 6) for x in b], "listing": "complete",
                          "search_calls": 1, "listed": 0, "downloaded": 0, "failed": 0})
            os.makedirs(os.path.join(out, gid), exist_ok=True)
    # The angles come from one seeded stream, drawn in the same order as
    # before, so the files are byte-for-byte those of the one-process version
    # and do not depend on how the work is split; every core writes (1,000,000
    # files took 35 min with one process and json.dump's many small writes).
    angles = [rnd.uniform(0, 360) for _ in range(n)]
    workers = max(1, min(len(os.sched_getaffinity(0)), 8))
    chunks = [(out, grids, angles[lo:lo + CHUNK], lo, min(n, lo + CHUNK), csv_path is not None)
              for lo in range(0, n, CHUNK)]
    with multiprocessing.Pool(workers) as pool:
        lines = pool.map(write_chunk, chunks)
    for i in range(n):
        g = grids[(i // PER_SEQ) % k]
        g["listed"] += 1
        g["downloaded"] += 1
    if csv_path:
        with open(csv_path, "w") as csv:
            csv.write("id,lon,lat,sequence,captured_at,compass_angle,is_pano,grid\n")
            for part in lines:
                csv.write(part)
    counts = {"listed": n, "downloaded": n, "skipped": 0, "failed": 0, "failed_by_reason": {},
              "without_position": 0, "bytes": n * 123456, "search_calls": k, "entity_calls": 0,
              "truncated_grids": 0, "failed_grids": 0}
    all_b = [grids[0]["bbox"][0], min(g["bbox"][1] for g in grids), max(g["bbox"][2] for g in grids), grids[0]["bbox"][3]]
    run = {"schema_version": 1, "tool": "mlyexport 0.1.0",
           "request": {"area": {"kind": "grid", "bbox": all_b, "grid_spec": f"{side}x{side}"},
                       "filters": {"since": None, "until": None, "pano": "include", "creator": None,
                                   "organization": None, "max_images": None}, "size": "1024"},
           "grids": grids, "totals": counts, "failures": [],
           "runs": [{"tool_version": "0.1.0", "command_line": ["mlyexport", "fetch"], "api_url": "http://127.0.0.1:1",
                     "started_at": "2024-01-01T00:00:00Z", "finished_at": "2024-01-01T01:00:00Z",
                     "outcome": "complete", "dry_run": False, "counts": counts}]}
    with open(os.path.join(out, "mlyexport-run.json"), "w") as f:
        json.dump(run, f, indent=1)

if __name__ == "__main__":
    main()
