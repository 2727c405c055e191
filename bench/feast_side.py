"""Feast's side of bench/features.py, run under a venv with `feast` installed (pinned in
bench/features.py). Reads the same Parquet files and prints one JSON object per phase:

  python feast_side.py WORKDIR historical LOOKBACK_DAYS    get_historical_features (file store)
  python feast_side.py WORKDIR materialize                 feast materialize to SQLite
  python feast_side.py WORKDIR online KEYS CALLS           get_online_features, 1 and 100 keys
"""

import json
import os
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")

REPO = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float32

customer = Entity(name="customer", join_keys=["customer_id"])
source = FileSource(path="{features}", timestamp_field="ts")
customer_features = FeatureView(
    name="customer_features",
    entities=[customer],
    ttl=timedelta(days={lookback_days}),
    schema=[Field(name=f"f{{i}}", dtype=Float32) for i in range(10)],
    source=source,
)
"""

CONFIG = """
project: bench
registry: {repo}/registry.db
provider: local
offline_store:
  type: file
online_store:
  type: sqlite
  path: {repo}/online.db
entity_key_serialization_version: 3
"""


def repo(workdir, lookback_days):
    path = Path(workdir) / "feast_repo"
    if not (path / "registry.db").exists():
        path.mkdir(parents=True, exist_ok=True)
        (path / "feature_store.yaml").write_text(CONFIG.format(repo=path))
        (path / "features.py").write_text(REPO.format(features=Path(workdir) / "features.parquet", lookback_days=lookback_days))
        subprocess.run(["feast", "apply"], cwd=path, check=True, capture_output=True, env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    return path


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    workdir, phase = sys.argv[1], sys.argv[2]
    import pandas as pd
    from feast import FeatureStore

    if phase == "historical":
        lookback_days = int(sys.argv[3])
        store = FeatureStore(repo_path=str(repo(workdir, lookback_days)))
        labels = pd.read_parquet(Path(workdir) / "labels.parquet").rename(columns={"event_ts": "event_timestamp"})
        started = time.perf_counter()
        frame = store.get_historical_features(entity_df=labels, features=[f"customer_features:f{i}" for i in range(10)]).to_df()
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), "rows": len(frame), "matched": int(frame["f0"].notna().sum())}))
    elif phase == "materialize":
        path = repo(workdir, 3)
        started = time.perf_counter()
        subprocess.run(["feast", "materialize", "2023-12-01T00:00:00", "2025-01-01T00:00:00"], cwd=path, check=True, capture_output=True, env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
        print(json.dumps({"seconds": time.perf_counter() - started}))
    elif phase == "online":
        keys, calls = int(sys.argv[3]), int(sys.argv[4])
        store = FeatureStore(repo_path=str(repo(workdir, 3)))
        import random

        rng = random.Random(1)
        result = {}
        for batch in (1, 100):
            samples = []
            for call in range(calls + 20):
                rows = [{"customer_id": rng.randrange(keys)} for _ in range(batch)]
                started = time.perf_counter()
                store.get_online_features(features=[f"customer_features:f{i}" for i in range(10)], entity_rows=rows).to_dict()
                if call >= 20:
                    samples.append(time.perf_counter() - started)
            samples.sort()
            result[str(batch)] = [samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]]
        print(json.dumps(result))
    else:
        raise SystemExit(f"unknown phase {phase}")


if __name__ == "__main__":
    main()
