"""Writes a `git fast-import` stream of a synthetic history to standard output, for timing
history scans on more commits than a crate's releases give (bench/scan.sh HISTORY_SYNTHETIC).

    python3 bench/synthetic-history.py COMMITS FILES | git -C REPO.git fast-import --quiet

The first commit adds FILES source files (about 2 KB each, in 37 x 11 folders); every later
commit edits two of them, one minute after the one before. Every 500th commit also adds a
config file holding a token shaped as a GitHub personal access token (random, so each is a
finding), so the history has COMMITS // 500 secrets. Deterministic: the same arguments give the
same repository.
"""

import random
import string
import sys


def main() -> None:
    commits, files = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "value", "config", "return", "let", "fn",
             "struct", "impl", "match", "self", "Some", "None", "Ok", "Err"]
    out = sys.stdout.buffer
    paths = [f"src/m{i % 37}/d{i % 11}/f{i}.rs" for i in range(files)]
    versions = [0] * files

    def source(index: int) -> bytes:
        versions[index] += 1
        lines = [f"// file {index} version {versions[index]}"]
        for k in range(40):
            lines.append(" ".join(rng.choice(words) for _ in range(8)) + f" {index}_{versions[index]}_{k};")
        return ("\n".join(lines) + "\n").encode()

    def put(path: str, data: bytes) -> None:
        out.write(f"M 100644 inline {path}\ndata {len(data)}\n".encode())
        out.write(data)
        out.write(b"\n")

    for c in range(commits):
        message = f"change {c}".encode()
        out.write(f"commit refs/heads/main\nmark :{c + 1}\n".encode())
        out.write(f"committer Bench <bench@example.com> {1500000000 + c * 60} +0000\n".encode())
        out.write(f"data {len(message)}\n".encode() + message + b"\n")
        if c > 0:
            out.write(f"from :{c}\n".encode())
        for index in range(files) if c == 0 else rng.sample(range(files), 2):
            put(paths[index], source(index))
        if c % 500 == 499:
            token = "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
            put(f"deploy/env{c}.sh", f"export GITHUB_TOKEN={token}\n".encode())
    out.flush()


if __name__ == "__main__":
    main()
