# The Python 3 workload recorded into bench/traces/python3-json.rep: builds
# a JSON document of nested records, round-trips it, indexes it with dicts
# and regular expressions, and sorts it, the everyday mix of an
# interpreter's allocations.
import json
import re

records = []
for i in range(20000):
    records.append({
        "id": i,
        "name": f"user{i:05d}",
        "tags": [f"t{j}" for j in range(i % 7)],
        "score": (i * 7919) % 1000 / 10.0,
        "bio": "lorem ipsum " * (i % 13),
    })
text = json.dumps(records)
back = json.loads(text)
by_tag = {}
for r in back:
    for t in r["tags"]:
        by_tag.setdefault(t, []).append(r["id"])
pattern = re.compile(r"user0*(\d+)")
numbers = [int(pattern.match(r["name"]).group(1)) for r in back]
ranked = sorted(back, key=lambda r: (-r["score"], r["name"]))
print(len(text), len(by_tag), sum(numbers), ranked[0]["name"])
