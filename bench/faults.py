#!/usr/bin/env python3
"""The fault soak: submits N scans to a fresh `scanstream up` (its own local Kafka and registry)
and, halfway, kills `up` itself (mode `up`: kill -9, then starts it again on the same data
folder) or its broker (mode `broker`: kill -9 of the JVM; `up` restarts it). Then waits until
every acknowledged scan ended and prints, as JSON: acknowledged, refused (503 while Kafka was
away), terminal, runs counted twice, hanging transactions `up` aborted, and `scanstream audit`'s
verdict.

    cargo build -p scanstream && bench/faults.py target/debug/scanstream up 200
    bench/faults.py "$CARGO_TARGET_DIR/debug/scanstream" broker 300

About 30-40 s a run on the 2-core development machine (see docs/testing.md)."""
import json, os, signal, subprocess, sys, time, urllib.request, concurrent.futures as cf

BIN = sys.argv[1]; MODE = sys.argv[2]; N = int(sys.argv[3]) if len(sys.argv) > 3 else 200
DATA = f"/tmp/killrun-{MODE}"; PORT = 18181 if MODE == "up" else 18282
subprocess.run(["rm", "-rf", DATA]); os.makedirs(f"{DATA}/repos/r")
env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@e")
for cmd in (["git", "init", "-q", "-b", "main"], ["sh", "-c", "echo hi > README"], ["git", "add", "-A"], ["git", "commit", "-qm", "i"]):
    subprocess.run(cmd, cwd=f"{DATA}/repos/r", env=env, check=True)

def start():
    log = open(f"/tmp/killrun-{MODE}.out", "a")
    p = subprocess.Popen([BIN, "up", "--data-dir", DATA, "--listen", f"127.0.0.1:{PORT}", "--kafka-port", "0", "--registry-port", "0"], stdout=log, stderr=log)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz", timeout=2) as r:
                if r.status == 200: return p
        except Exception: pass
        time.sleep(0.5)
    raise SystemExit("up never ready")

def call(method, path, body=None):
    token = open(f"{DATA}/api-token").read().strip()
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r: return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e: return e.code, None
    except Exception: return 0, None

p = start(); t0 = time.time()
acked = set(); refused = 0
def submit(i):
    name = f"kr-{i}"
    status, _ = call("POST", "/jobs", {"name": name, "repo": f"file://{DATA}/repos/r"})
    return name, status
with cf.ThreadPoolExecutor(8) as pool:
    futures = []
    for i in range(N):
        futures.append(pool.submit(submit, i))
        if i == N // 2:
            time.sleep(0.2)
            if MODE == "up":
                p.send_signal(signal.SIGKILL); p.wait(); time.sleep(1); p = start()
            else:
                os.kill(int(open(f"{DATA}/cluster/kafka/pid").read()), signal.SIGKILL)
        time.sleep(0.02)
    for f in futures:
        name, status = f.result()
        if status == 202: acked.add(name)
        else: refused += 1
deadline = time.time() + 240
while True:
    status, stats = call("GET", "/jobs/stats")
    stats = stats or {}
    terminal = {n for n in acked if (stats.get(n) or {}).get("succeeded", 0) + (stats.get(n) or {}).get("failed", 0) > 0 and (stats.get(n) or {}).get("succeeded", 0) >= 1}
    if terminal == acked or time.time() > deadline: break
    time.sleep(2)
dups = sorted(n for n in acked if (stats.get(n) or {}).get("succeeded", 0) > 1)
missing = sorted(acked - terminal)
audit = subprocess.run([BIN, "--bootstrap", open(f"{DATA}/cluster/kafka/server.properties").read().split("PLAINTEXT://")[1].split(",")[0],
                        "audit", "--api-url", f"http://127.0.0.1:{PORT}"], capture_output=True, text=True,
                       env=dict(os.environ, SCANSTREAM_TOKEN=open(f"{DATA}/api-token").read().strip(),
                                SCANSTREAM__REGISTRY__URL=[l for l in open(f"/tmp/killrun-{MODE}.out") if "Schema registry:" in l][-1].split()[-1]))
repaired = [l.strip() for l in open(f"/tmp/killrun-{MODE}.out") if "aborted a transaction" in l]
print(json.dumps({"mode": MODE, "submitted": N, "acknowledged": len(acked), "refused_or_failed": refused,
                  "terminal": len(terminal & acked), "not_terminal": missing[:10], "succeeded_twice": dups[:10], "hanging_transactions_aborted": repaired[:5],
                  "audit_exit": audit.returncode, "audit": audit.stdout.strip().splitlines()[:3], "seconds": round(time.time() - t0, 1)}, indent=1))
p.send_signal(signal.SIGINT); p.wait(timeout=60)
