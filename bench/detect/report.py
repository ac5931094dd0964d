#!/usr/bin/env python3
"""Scores the reports of bench/detect.sh against the ground truth and prints Markdown tables.

    report.py --work DIR --corpora planted,peers,fp --tools scanstream,gitleaks,... [--json OUT]
              [--known-real FILE] [--fp-root DIR] [--fp-files N] [--samples N] [--seed N]

Reads DIR/reports/<corpus>-<tool>.json (each tool's own JSON), DIR/reports/times.tsv (corpus,
tool, seconds, status), DIR/planted-manifest.json and DIR/peers-manifest.json. The scanned
folders are DIR/planted, DIR/peers and the fp root; every report path is made relative to them.

A ground-truth record (file, line..end_line) counts as found by a tool when the tool reports any
finding in that file whose line range overlaps line-1..end_line+1.
"""
import argparse
import collections
import json
import os
import random
import sys

TOOLS = ["scanstream", "gitleaks", "kingfisher", "detect-secrets"]


def redact(s):
    s = (s or "").strip().replace("\n", "\\n")
    if not s:
        return "(not given)"
    if "*" in s:  # already redacted by the tool
        return s
    return "%s… (%d chars)" % (s[:4], len(s))


def norm(path, root):
    p = path
    if os.path.isabs(p):
        try:
            p = os.path.relpath(p, root)
        except ValueError:
            pass
    while p.startswith("./"):
        p = p[2:]
    return p.replace(os.sep, "/")


def parse(tool, report, root):
    """[(path, first line, last line, rule, redacted secret)] from a tool's JSON report."""
    with open(report, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if not text.strip():
        return []
    d = json.loads(text)
    out = []
    if tool == "scanstream":
        for f in d.get("findings") or []:
            line = int(f.get("line") or 0)
            out.append((norm(f["path"], root), line, line, f.get("rule", "?"), f.get("preview", "")))
    elif tool == "gitleaks":
        for f in d or []:
            a = int(f.get("StartLine") or 0)
            b = int(f.get("EndLine") or a)
            out.append((norm(f["File"], root), a, max(a, b), f.get("RuleID", "?"), redact(f.get("Secret"))))
    elif tool == "kingfisher":
        for f in d.get("findings") or []:
            fi = f.get("finding", {})
            line = int(fi.get("line") or 0)
            rule = (f.get("rule") or {}).get("id", "?")
            out.append((norm(fi.get("path", "?"), root), line, line, rule, redact(fi.get("snippet"))))
    elif tool == "detect-secrets":
        for path, items in (d.get("results") or {}).items():
            for f in items:
                line = int(f.get("line_number") or 0)
                out.append((norm(path, root), line, line, f.get("type", "?"), "(hashed by the tool)"))
    return out


def index(findings):
    by_file = collections.defaultdict(list)
    for path, a, b, rule, _ in findings:
        by_file[path].append((a, b, rule))
    return by_file


def hit(by_file, rec):
    lo, hi = rec["line"] - 1, rec.get("end_line", rec["line"]) + 1
    return any(a <= hi and b >= lo for a, b, _ in by_file.get(rec["file"], ()))


def cell(found, total):
    if total == 0:
        return "–"
    return "%d/%d %.0f%%" % (found, total, 100.0 * found / total)


def md_table(header, rows, numeric=True):
    """Markdown table; with numeric, every column but the first is right-aligned."""
    align = ["---" if i == 0 or not numeric else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--corpora", default="planted,peers,fp")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--json")
    ap.add_argument("--known-real")
    ap.add_argument("--fp-root")
    ap.add_argument("--fp-files", type=int, default=0)
    ap.add_argument("--fp-source", default="")
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--seed", type=int, default=20240611)
    a = ap.parse_args()
    corpora = [c for c in a.corpora.split(",") if c]
    tools = [t for t in a.tools.split(",") if t]
    reports = os.path.join(a.work, "reports")

    times = {}
    status = {}
    tpath = os.path.join(reports, "times.tsv")
    if os.path.exists(tpath):
        for line in open(tpath):
            c, t, secs, st = line.rstrip("\n").split("\t")
            times[(c, t)] = float(secs)
            status[(c, t)] = st

    roots = {"planted": os.path.join(a.work, "planted"), "peers": os.path.join(a.work, "peers"),
             "fp": a.fp_root or os.path.join(a.work, "fp")}
    findings = {}
    for c in corpora:
        for t in tools:
            p = os.path.join(reports, "%s-%s.json" % (c, t))
            if status.get((c, t)) == "ok" and os.path.exists(p):
                try:
                    findings[(c, t)] = parse(t, p, roots[c])
                except (ValueError, KeyError, TypeError) as e:
                    print("report: cannot read %s: %s" % (p, e), file=sys.stderr)
                    status[(c, t)] = "unreadable report"

    def unavailable(c, t):
        if (c, t) in findings:
            return None
        return status.get((c, t), "not run")

    out = []
    figures = {"tools": tools, "corpora": {}, "wall_seconds": {}}

    # --- planted --------------------------------------------------------------------------
    if "planted" in corpora:
        m = json.load(open(os.path.join(a.work, "planted-manifest.json")))
        secrets = [r for r in m["records"] if r["kind"] == "secret"]
        placeholders = [r for r in m["records"] if r["kind"] == "placeholder"]
        idx = {t: index(findings[("planted", t)]) for t in tools if ("planted", t) in findings}
        fam_rows, ctx_rows = [], []
        fig = {"seed": m["seed"], "families": {}, "contexts": {}, "overall": {}, "placeholders": {},
               "other_findings": {}}
        for fam in m["families"]:
            recs = [r for r in secrets if r["family"] == fam]
            row = [fam]
            for t in tools:
                if t not in idx:
                    row.append(unavailable("planted", t))
                    continue
                n = sum(hit(idx[t], r) for r in recs)
                fig["families"].setdefault(fam, {})[t] = {"found": n, "total": len(recs)}
                row.append(cell(n, len(recs)))
            fam_rows.append(row)
        for ctx in m["contexts"]:
            recs = [r for r in secrets if r["context"] == ctx]
            row = [ctx]
            for t in tools:
                if t not in idx:
                    row.append(unavailable("planted", t))
                    continue
                n = sum(hit(idx[t], r) for r in recs)
                fig["contexts"].setdefault(ctx, {})[t] = {"found": n, "total": len(recs)}
                row.append(cell(n, len(recs)))
            ctx_rows.append(row)
        overall = ["**overall recall**"]
        ph_row = ["placeholders reported (lower is better)"]
        other_row = ["findings on no planted line"]
        known = set((r["file"], ln) for r in m["records"] for ln in range(r["line"] - 1, r["end_line"] + 2))
        for t in tools:
            if t not in idx:
                overall.append(unavailable("planted", t))
                ph_row.append("")
                other_row.append("")
                continue
            n = sum(hit(idx[t], r) for r in secrets)
            fig["overall"][t] = {"found": n, "total": len(secrets)}
            overall.append("**%s**" % cell(n, len(secrets)))
            p = sum(hit(idx[t], r) for r in placeholders)
            fig["placeholders"][t] = {"reported": p, "total": len(placeholders)}
            ph_row.append(cell(p, len(placeholders)))
            other = sum(1 for f in findings[("planted", t)] if not any((f[0], ln) in known for ln in range(f[1], f[2] + 1)))
            fig["other_findings"][t] = other
            other_row.append(other)
        figures["corpora"]["planted"] = fig
        out.append("### Planted secrets: recall per family (seed %d, %d secrets in %d families, %d contexts)\n"
                   % (m["seed"], len(secrets), len(m["families"]), len(m["contexts"])))
        out.append(md_table(["family"] + tools, fam_rows + [overall, ph_row, other_row]))
        out.append("\nRecall per context:\n")
        out.append(md_table(["context"] + tools, ctx_rows + [overall]))
        out.append("")

    # --- peers ----------------------------------------------------------------------------
    if "peers" in corpora:
        m = json.load(open(os.path.join(a.work, "peers-manifest.json")))
        idx = {t: index(findings[("peers", t)]) for t in tools if ("peers", t) in findings}
        rows = []
        fig = {"sources": {}, "overall": {}}
        all_recs = []
        for src, info in sorted(m["sources"].items()):
            recs = [r for r in m["records"] if r["source"] == src]
            if not recs:
                rows.append(["%s (%s)" % (src, info.get("error", "no examples"))] + ["n/a"] * len(tools))
                fig["sources"][src] = {"error": info.get("error", "no examples")}
                continue
            all_recs += recs
            rules = sorted(set(r["rule"] for r in recs))
            row = ["%s (%d examples of %d rules)" % (src, len(recs), len(rules))]
            row2 = ["%s: rules with ≥1 example found" % src]
            fig["sources"][src] = {"examples": len(recs), "rules": len(rules), "tools": {}}
            for t in tools:
                if t not in idx:
                    row.append(unavailable("peers", t))
                    row2.append("")
                    continue
                found = [r for r in recs if hit(idx[t], r)]
                fr = set(r["rule"] for r in found)
                fig["sources"][src]["tools"][t] = {"found": len(found), "total": len(recs),
                                                   "rules_found": len(fr), "rules": len(rules),
                                                   "rules_missed": sorted(set(rules) - fr)}
                row.append(cell(len(found), len(recs)))
                row2.append(cell(len(fr), len(rules)))
            rows += [row, row2]
        overall = ["**overall recall**"]
        for t in tools:
            if t not in idx:
                overall.append(unavailable("peers", t))
                continue
            n = sum(hit(idx[t], r) for r in all_recs)
            fig["overall"][t] = {"found": n, "total": len(all_recs)}
            overall.append("**%s**" % cell(n, len(all_recs)))
        figures["corpora"]["peers"] = fig
        out.append("### Peers' published rule examples: recall per source\n")
        out.append(md_table(["source"] + tools, rows + [overall]))
        out.append("")

    # --- fp -------------------------------------------------------------------------------
    if "fp" in corpora:
        known_real = set()
        if a.known_real and os.path.exists(a.known_real):
            for line in open(a.known_real):
                line = line.split("#", 1)[0].strip()
                if line:
                    known_real.add(line)

        def is_real(path, line):
            return path in known_real or "%s:%d" % (path, line) in known_real

        fig = {"files": a.fp_files, "source": a.fp_source, "tools": {}}
        rows = []
        details = []
        rng = random.Random(a.seed)
        for t in tools:
            if ("fp", t) not in findings:
                rows.append([t, unavailable("fp", t), "", "", ""])
                continue
            fs = findings[("fp", t)]
            real = [f for f in fs if is_real(f[0], f[1])]
            fps = [f for f in fs if not is_real(f[0], f[1])]
            files = len(set(f[0] for f in fps))
            per_kfile = 1000.0 * len(fps) / a.fp_files if a.fp_files else 0
            rows.append([t, len(fps), files, "%.1f" % per_kfile, len(real)])
            top = collections.Counter(f[3] for f in fps).most_common(10)
            sample = rng.sample(fps, min(a.samples, len(fps)))
            fig["tools"][t] = {"false_positives": len(fps), "files_with_findings": files, "known_real": len(real),
                               "top_rules": top,
                               "samples": [{"path": f[0], "line": f[1], "rule": f[3], "secret": f[4]} for f in sample]}
            details.append("**%s**: top rules: %s" % (t, ", ".join("`%s` %d" % (r, n) for r, n in top) or "none"))
            details.append("")
            if sample:
                details.append(md_table(["sample finding (path:line)", "rule", "secret (redacted)"],
                                        [["`%s:%d`" % (f[0], f[1]), "`%s`" % f[3], "`%s`" % f[4].replace("|", "\\|")]
                                         for f in sample], numeric=False))
                details.append("")
        figures["corpora"]["fp"] = fig
        out.append("### False positives on ordinary code: %d files scanned (%s)\n" % (a.fp_files, a.fp_source))
        out.append("All findings count as false positives except those listed in bench/detect/fp-known-real.txt.\n")
        out.append(md_table(["tool", "false positives", "files with findings", "per 1000 files", "known real"], rows))
        out.append("")
        out.extend(details)

    # --- time -----------------------------------------------------------------------------
    rows = []
    for c in corpora:
        row = [c]
        for t in tools:
            if (c, t) in times and status.get((c, t)) in ("ok",):
                row.append("%.1f s" % times[(c, t)])
                figures["wall_seconds"].setdefault(c, {})[t] = times[(c, t)]
            else:
                row.append(status.get((c, t), "not run"))
        rows.append(row)
    out.append("### Wall time per tool\n")
    out.append(md_table(["corpus"] + tools, rows))
    figures["status"] = {"%s/%s" % k: v for k, v in status.items()}
    print("\n".join(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
