"""What every benchmark script prints about the machine it ran on (shared by benchmarks/*.py)."""
import os, resource, sys
from pathlib import Path

from mpvae.speed import cpu_name as cpu_model   # one reader of /proc/cpuinfo for the library and the benchmarks

def loadavg():
    "1, 5 and 15 minute load averages (None where the OS has none): timings taken under load are inflated."
    try: return [round(v, 2) for v in os.getloadavg()]
    except OSError: return None

def peak_rss_mb() -> float:
    "Peak resident memory of this process, MiB."
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / 1024 if sys.platform != 'darwin' else r / 2**20, 1)

def write_json(path, obj):
    "Write a benchmark's results to `path` atomically (a half-written file never looks like a result); numpy scalars as floats."
    import json
    from mpvae.core import atomic_write
    with atomic_write(Path(path), 'w') as f: json.dump(obj, f, indent=1, default=float)
