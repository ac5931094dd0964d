#!/usr/bin/env python3
"""Builds the "peers" corpus of bench/detect.sh from other scanners' published rule examples, at
run time (nothing of theirs is stored in this repository).

    peers.py OUT_DIR [--gitleaks-rules DIR] [--kingfisher BIN] [--seed N] [--manifest FILE]

gitleaks: DIR is cmd/generate/config/rules of the gitleaks Go module source (in the Go module
cache after `go install`). Each rule function there lists its true positives in `tps` (string
literals, `utils.GenerateSampleSecret(s)(id, secret)` calls, `secrets.NewSecret(regex)`
samples, `append`, `fmt.Sprintf`, local variables). A small evaluator for that subset of Go
rebuilds the list; samples from `secrets.NewSecret` are generated from their regex with a seeded
RNG (literals, classes, groups, alternation, counted repetition); anything outside the subset is
skipped and counted. `ValidateWithPaths` rules (tps keyed by file path) are written under those
file names; path-only ones (empty content) are left out.

kingfisher: `kingfisher rules list --format json` gives each rule's `examples`; non-empty ones
are used the same way (kingfisher-bin 2.14.0 ships none: its list has `"examples": []`).

Layout: OUT_DIR/<source>/<rule id>/examples.txt, one example after another with two blank lines
between them; manifest records {"file", "line", "end_line", "source", "rule", "value"}.
"""
import argparse
import base64
import json
import os
import random
import re
import string
import subprocess
import sys

# ---------------------------------------------------------------------------------------------
# Regex sampler (the subset gitleaks' sample patterns use)
# ---------------------------------------------------------------------------------------------


class Unsupported(Exception):
    pass


ESC_CLASSES = {
    "d": string.digits,
    "w": string.ascii_letters + string.digits + "_",
    "s": " ",
}


class RegexSampler:
    def __init__(self, pattern, rng):
        self.p = pattern
        self.i = 0
        self.rng = rng

    def sample(self):
        node = self.alt()
        if self.i != len(self.p):
            raise Unsupported("trailing regex text at %d: %r" % (self.i, self.p))
        return self.gen(node)

    def peek(self):
        return self.p[self.i] if self.i < len(self.p) else ""

    def alt(self):
        branches = [self.seq()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.seq())
        return ("alt", branches)

    def seq(self):
        items = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            if atom is None:
                continue
            items.append(self.quant(atom))
        return ("seq", items)

    def quant(self, atom):
        c = self.peek()
        if c == "?":
            self.i += 1
            lo, hi = 0, 1
        elif c == "*":
            self.i += 1
            lo, hi = 0, 1
        elif c == "+":
            self.i += 1
            lo, hi = 1, 2
        elif c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", self.p[self.i:])
            if not m:
                raise Unsupported("bad repetition")
            self.i += m.end()
            lo = int(m.group(1))
            hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else lo + 1)
        else:
            return atom
        if self.peek() == "?":  # lazy
            self.i += 1
        return ("rep", atom, lo, hi)

    def escape(self):
        c = self.p[self.i]
        self.i += 1
        if c in ESC_CLASSES:
            return ESC_CLASSES[c]
        if c == "x":
            h = self.p[self.i:self.i + 2]
            self.i += 2
            return chr(int(h, 16))
        if c in "bBAzZ":
            return None
        if c.isalnum():
            raise Unsupported("escape \\" + c)
        return c

    def atom(self):
        c = self.p[self.i]
        if c == "(":
            self.i += 1
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?", self.i):
                m = re.match(r"\?([a-zA-Z-]*)(:|\))", self.p[self.i:])
                if not m:
                    raise Unsupported("group flags")
                self.i += m.end()
                if m.group(2) == ")":
                    return None  # (?i): flags only
            elif self.p.startswith("?P<", self.i):
                self.i = self.p.index(">", self.i) + 1
            node = self.alt()
            if self.peek() != ")":
                raise Unsupported("unclosed group")
            self.i += 1
            return node
        if c == "[":
            return ("set", self.charset())
        if c == "\\":
            self.i += 1
            e = self.escape()
            return None if e is None else ("set", e)
        if c in "^$":
            self.i += 1
            return None
        if c == ".":
            self.i += 1
            return ("set", string.ascii_letters + string.digits)
        self.i += 1
        return ("lit", c)

    def charset(self):
        self.i += 1
        neg = False
        if self.peek() == "^":
            neg = True
            self.i += 1
        chars = []
        first = True
        while True:
            c = self.peek()
            if c == "":
                raise Unsupported("unclosed class")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and self.p.startswith("[:", self.i):
                raise Unsupported("posix class")
            if c == "\\":
                self.i += 1
                e = self.escape()
                if e is None:
                    raise Unsupported("anchor in class")
                if len(e) > 1:
                    chars.extend(e)
                    continue
                c = e
            else:
                self.i += 1
            if self.peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                self.i += 1
                d = self.p[self.i]
                self.i += 1
                if d == "\\":
                    d = self.escape()
                chars.extend(chr(x) for x in range(ord(c), ord(d) + 1))
            else:
                chars.append(c)
        if neg:
            pool = string.ascii_letters + string.digits
            chars = [x for x in pool if x not in chars]
        if not chars:
            raise Unsupported("empty class")
        return "".join(sorted(set(chars)))

    def gen(self, node):
        kind = node[0]
        if kind == "alt":
            return self.gen(self.rng.choice(node[1]))
        if kind == "seq":
            return "".join(self.gen(n) for n in node[1])
        if kind == "rep":
            return "".join(self.gen(node[1]) for _ in range(self.rng.randint(node[2], node[3])))
        if kind == "set":
            return self.rng.choice(node[1])
        return node[1]


# ---------------------------------------------------------------------------------------------
# Go subset: tokenizer and evaluator
# ---------------------------------------------------------------------------------------------

TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<nl>\n)
  | (?P<raw>`[^`]*`)
  | (?P<str>"(?:\\.|[^"\\\n])*")
  | (?P<rune>'(?:\\.|[^'\\\n])+')
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\.\.|:=|\+=|==|!=|&&|\|\||<-|[-+*/%&|^<>=!(){}\[\],;:.])
""", re.S | re.X)


def go_unquote(s):
    body = s[1:-1]
    out = []
    i = 0
    simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
              "f": "\f", "v": "\v"}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == "x":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif e == "u":
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif e == "U":
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif e in "01234567":
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise Unsupported("string escape")
    return "".join(out)


def tokenize(src):
    toks = []
    pos = 0
    while pos < len(src):
        m = TOKEN_RE.match(src, pos)
        if not m:
            toks.append(("op", src[pos]))
            pos += 1
            continue
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            if kind == "comment" and "\n" in m.group():
                toks.append(("nl", "\n"))
            continue
        text = m.group()
        if kind == "raw":
            toks.append(("str", text[1:-1].replace("\r", "")))
        elif kind == "str":
            try:
                toks.append(("str", go_unquote(text)))
            except Unsupported:
                toks.append(("bad", text))
        else:
            toks.append((kind, text))
    return toks


def sample_templates():
    """gitleaks' utils.GenerateSampleSecrets templates (v8 cmd/generate/config/utils/generate.go)."""
    return [
        '{i}Token="{s}"', '{i}Token = "{s}"', "{i}Token={s}", "{i}Token = {s}",
        '{\n    "{i}_token": "{s}"\n}', '{"config.ini": "{I}_TOKEN={s}\\nBACKUP_ENABLED=true"}',
        "<{i}Token>\n    {s}\n</{i}Token>", "{i}_token: {s}", "{i}_token: '{s}'", '{i}_token: "{s}"',
        'string {i}Token = "{s}";', 'var {i}Token string = "{s}"', '{i}Token := "{s}"', "{i}Token := `{s}`",
        'String {i}Token = "{s}";', 'var {i}Token = "{s}"', '${i}Token .= "{s}"', "{i}Token = '{s}'",
        '{i}Token = "{s}"', 'System.setProperty("{I}_TOKEN", "{s}")', '  "{i}Token" => "{s}"',
        '{i}_TOKEN = "{s}"', '{i}_TOKEN := "{s}"', '{i}_TOKEN ::= "{s}"', '{i}_TOKEN :::= "{s}"',
        '{i}_TOKEN ?= "{s}"',
    ]


class Evaluator:
    def __init__(self, toks, rng, stats):
        self.t = toks
        self.i = 0
        self.rng = rng
        self.vars = {}
        self.stats = stats

    def peek(self, k=0):
        j = self.i + k
        return self.t[j] if j < len(self.t) else ("eof", "")

    def next(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, text):
        tok = self.next()
        if tok[1] != text:
            raise Unsupported("expected %r, got %r" % (text, tok[1]))

    def skip_nl(self):
        while self.peek()[0] == "nl":
            self.i += 1

    # expressions ------------------------------------------------------------------------------
    def expr(self, in_parens):
        v = self.unary(in_parens)
        while True:
            if in_parens:
                self.skip_nl()
            if self.peek()[1] != "+":
                return v
            self.i += 1
            self.skip_nl()
            w = self.unary(in_parens)
            if not (isinstance(v, str) and isinstance(w, str)):
                raise Unsupported("+ on non-strings")
            v = v + w

    def unary(self, in_parens):
        kind, text = self.next()
        if kind == "str":
            return text
        if kind == "num":
            return text
        if text == "(":
            self.skip_nl()
            v = self.expr(True)
            self.skip_nl()
            self.expect(")")
            return v
        if text == "[" and self.peek()[1] == "]":
            self.i += 1
            typ = self.next()[1]
            if typ == "byte" and self.peek()[1] == "(":
                self.i += 1
                self.skip_nl()
                v = self.expr(True)
                self.skip_nl()
                self.expect(")")
                return v
            if typ != "string":
                raise Unsupported("slice of " + typ)
            return self.composite(False)
        if text == "map":
            # map[string]string{...}
            while self.peek()[1] != "{":
                self.i += 1
            return self.composite(True)
        if kind == "ident":
            name = text
            while self.peek()[1] == "." and self.peek(1)[0] == "ident":
                self.i += 1
                name += "." + self.next()[1]
            if self.peek()[1] == "(":
                self.i += 1
                args = []
                spread = False
                self.skip_nl()
                while self.peek()[1] != ")":
                    args.append(self.expr(True))
                    self.skip_nl()
                    if self.peek()[1] == "...":
                        spread = True
                        self.i += 1
                        self.skip_nl()
                    if self.peek()[1] == ",":
                        self.i += 1
                        self.skip_nl()
                self.expect(")")
                return self.call(name, args, spread)
            if name in self.vars:
                return self.vars[name]
            raise Unsupported("unknown name " + name)
        raise Unsupported("unexpected token %r" % text)

    def composite(self, is_map):
        self.expect("{")
        items = []
        self.skip_nl()
        while self.peek()[1] != "}":
            start = self.i
            try:
                if is_map:
                    k = self.expr(True)
                    self.skip_nl()
                    self.expect(":")
                    self.skip_nl()
                    v = self.expr(True)
                    items.append((k, v))
                else:
                    items.append(self.expr(True))
            except Unsupported:
                self.stats["skipped_items"] += 1
                self.i = start
                self.skip_item()
            self.skip_nl()
            if self.peek()[1] == ",":
                self.i += 1
            self.skip_nl()
        self.expect("}")
        return dict(items) if is_map else items

    def skip_item(self):
        depth = 0
        while True:
            kind, text = self.peek()
            if kind == "eof":
                raise Unsupported("eof")
            if text in "([{" and kind == "op":
                depth += 1
            elif text in ")]}" and kind == "op":
                if depth == 0:
                    return
                depth -= 1
            elif text == "," and depth == 0:
                return
            self.i += 1

    def call(self, name, args, spread):
        def s(x):
            if not isinstance(x, str):
                raise Unsupported("string expected")
            return x
        patterns = {
            "utils.Numeric": "[0-9]{%s}", "utils.Hex": "[a-f0-9]{%s}", "utils.AlphaNumeric": "[a-z0-9]{%s}",
            "utils.AlphaNumericExtendedShort": "[a-z0-9_-]{%s}", "utils.AlphaNumericExtended": "[a-z0-9=_\\-]{%s}",
            "utils.AlphaNumericExtendedLong": "[a-z0-9\\/=_\\+\\-]{%s}",
        }
        if name in patterns:
            return patterns[name] % s(args[0])
        if name == "utils.Hex8_4_4_4_12":
            return "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        if name == "secrets.NewSecret":
            return RegexSampler(s(args[0]), self.rng).sample()
        if name == "newPlausibleSecret":  # generic.go: a sample with at least one digit 1-9
            for _ in range(100):
                v = RegexSampler(s(args[0]), self.rng).sample()
                if re.search("[1-9]", v):
                    return v
            raise Unsupported("newPlausibleSecret")
        if name == "base64.StdEncoding.EncodeToString":
            return base64.b64encode(s(args[0]).encode()).decode()
        if name == "utils.GenerateSampleSecret":
            return '%s_api_token = "%s"' % (s(args[0]), s(args[1]))
        if name == "utils.GenerateSampleSecrets":
            i, sec = s(args[0]), s(args[1])
            return [t.replace("{i}", i).replace("{I}", i.upper()).replace("{s}", sec) for t in sample_templates()]
        if name == "fmt.Sprintf":
            fmt, rest = s(args[0]), list(args[1:])
            def sub(m):
                if m.group() == "%%":
                    return "%"
                if not rest:
                    raise Unsupported("Sprintf args")
                return str(rest.pop(0))
            return re.sub(r"%%|%[-+# 0-9.]*[svdq]", sub, fmt)
        if name == "strings.Repeat":
            return s(args[0]) * int(args[1])
        if name == "strings.ToUpper":
            return s(args[0]).upper()
        if name == "strings.ToLower":
            return s(args[0]).lower()
        if name == "append":
            base = list(args[0]) if isinstance(args[0], list) else None
            if base is None:
                raise Unsupported("append to non-list")
            for a in args[1:]:
                if isinstance(a, list):
                    base.extend(a)
                else:
                    base.append(s(a))
            return base
        raise Unsupported("call " + name)

    # statements -------------------------------------------------------------------------------
    def skip_statement(self):
        depth = 0
        while True:
            kind, text = self.peek()
            if kind == "eof":
                return
            if kind == "op" and text in "([{":
                depth += 1
            elif kind == "op" and text in ")]}":
                depth -= 1
            elif kind == "nl" and depth <= 0:
                self.i += 1
                return
            self.i += 1

    def var_decl(self):
        """`var name [type] = expr` or a `var ( ... )` group; unsupported values are skipped."""
        self.expect("var")
        group = self.peek()[1] == "("
        if group:
            self.i += 1
        while True:
            self.skip_nl()
            if group and self.peek()[1] == ")":
                self.i += 1
                return
            if self.peek()[0] != "ident":
                self.skip_statement()
                return
            name = self.next()[1]
            while self.peek()[1] not in ("=", "") and self.peek()[0] != "nl" and self.peek()[1] != ")":
                self.i += 1
            if self.peek()[1] == "=":
                self.i += 1
                start = self.i
                try:
                    self.vars[name] = self.expr(False)
                except Unsupported:
                    self.i = start
                    self.skip_statement()
                    if not group:
                        return
                    continue
            if not group:
                return
            if self.peek()[0] == "nl":
                self.i += 1

    def run(self):
        """Evaluates assignments in a function body; returns the rule id and the tps value."""
        rule_id = None
        tps_failed = False
        for j in range(len(self.t) - 2):
            if self.t[j] == ("ident", "RuleID") and self.t[j + 1][1] in (":", "=") and self.t[j + 2][0] == "str":
                rule_id = self.t[j + 2][1]
                break
        while self.peek()[0] != "eof":
            self.skip_nl()
            start = self.i
            kind, text = self.peek()
            if kind == "eof":
                break
            target = None
            if kind == "ident" and self.peek(1)[1] in (":=", "="):
                target = text
                self.i += 2
            elif text == "var":
                self.var_decl()
                continue
            if target is None:
                self.i = start
                # Look inside composite literals (config.Rule{...}) for RuleID only.
                self.skip_statement()
                if self.i == start:
                    self.i += 1
                continue
            try:
                v = self.expr(False)
                self.vars[target] = v
            except Unsupported as e:
                if target == "tps":
                    tps_failed = True
                    self.stats["skipped_statements"] += 1
                    self.stats.setdefault("reasons", []).append(str(e))
                self.i = start
                self.skip_statement()
                if self.i == start:
                    self.i += 1
        return rule_id, self.vars.get("tps"), tps_failed


def toplevel_vars(toks, rng, stats):
    """Values of the package-level `var` declarations of a file (evaluated in file order)."""
    ev = Evaluator(toks + [("nl", "\n")], rng, stats)
    depth = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "op" and text in "({[":
            depth += 1
        elif kind == "op" and text in ")}]":
            depth -= 1
        elif depth == 0 and toks[i] == ("ident", "var"):
            ev.i = i
            try:
                ev.var_decl()
            except Unsupported:
                pass
            i = max(ev.i, i + 1)
            continue
        i += 1
    return ev.vars


def function_bodies(toks):
    """(name, body tokens) of each top-level func."""
    out = []
    i = 0
    while i < len(toks):
        if toks[i] == ("ident", "func") and i + 1 < len(toks) and toks[i + 1][0] == "ident":
            name = toks[i + 1][1]
            j = i + 2
            depth = 0
            # find the body's opening brace: first '{' at paren depth 0
            while j < len(toks):
                if toks[j][1] == "(":
                    depth += 1
                elif toks[j][1] == ")":
                    depth -= 1
                elif toks[j][1] == "{" and depth == 0:
                    break
                j += 1
            k = j + 1
            depth = 1
            while k < len(toks) and depth:
                if toks[k][0] == "op" and toks[k][1] == "{":
                    depth += 1
                elif toks[k][0] == "op" and toks[k][1] == "}":
                    depth -= 1
                k += 1
            out.append((name, toks[j + 1:k - 1]))
            i = k
        else:
            i += 1
    return out


def gitleaks_examples(rules_dir, rng):
    stats = {"skipped_statements": 0, "skipped_items": 0, "functions": 0, "rules": 0}
    examples = {}  # rule id -> list of (file name or None, text)
    for fn in sorted(os.listdir(rules_dir)):
        if not fn.endswith(".go") or fn.endswith("_test.go"):
            continue
        toks = tokenize(open(os.path.join(rules_dir, fn), encoding="utf-8").read())
        globals_ = toplevel_vars(toks, rng, stats)
        for name, body in function_bodies(toks):
            if not any(t == ("ident", "tps") for t in body):
                continue
            stats["functions"] += 1
            ev = Evaluator(body + [("nl", "\n")], rng, stats)
            ev.vars.update(globals_)
            rule_id, tps, failed = ev.run()
            if not rule_id or tps is None:
                stats["skipped_statements"] += 0 if failed else 1
                continue
            items = examples.setdefault(rule_id, [])
            if isinstance(tps, dict):
                for path, text in sorted(tps.items()):
                    if isinstance(text, str) and text.strip():
                        items.append((path, text))
            else:
                for text in tps:
                    if isinstance(text, str) and text.strip():
                        items.append((None, text))
    stats["rules"] = sum(1 for v in examples.values() if v)
    return examples, stats


def kingfisher_examples(binary):
    env = dict(os.environ)
    try:
        out = subprocess.run([binary, "rules", "list", "--no-update-check", "--format", "json"],
                             capture_output=True, text=True, timeout=300, env=env).stdout
        rules = json.loads(out)
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return {}, {"error": str(e), "rules_listed": 0}
    examples = {}
    for r in rules:
        ex = [e for e in (r.get("examples") or []) if isinstance(e, str) and e.strip()]
        if ex:
            examples[r["id"]] = [(None, e) for e in ex]
    return examples, {"rules_listed": len(rules), "rules": len(examples)}


def write_source(out, source, examples, records):
    for rule_id, items in sorted(examples.items()):
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", rule_id)
        folder = os.path.join(out, source, safe)
        os.makedirs(folder, exist_ok=True)
        lines = []
        plain = [t for p, t in items if p is None]
        for text in plain:
            text = text.replace("\r\n", "\n").strip("\n")
            start = len(lines) + 1
            lines.extend(text.split("\n"))
            records.append({"file": "%s/%s/examples.txt" % (source, safe), "line": start, "end_line": len(lines),
                            "source": source, "rule": rule_id, "value": text})
            lines.extend(["", ""])
        if plain:
            with open(os.path.join(folder, "examples.txt"), "w", newline="\n") as f:
                f.write("\n".join(lines) + "\n")
        for path, text in ((p, t) for p, t in items if p is not None):
            name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path))
            text = text.replace("\r\n", "\n")
            with open(os.path.join(folder, name), "w", newline="\n") as f:
                f.write(text if text.endswith("\n") else text + "\n")
            n = text.rstrip("\n").count("\n") + 1
            records.append({"file": "%s/%s/%s" % (source, safe, name), "line": 1, "end_line": n,
                            "source": source, "rule": rule_id, "value": text})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--gitleaks-rules")
    ap.add_argument("--kingfisher")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--manifest")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    manifest = a.manifest or os.path.join(os.path.dirname(os.path.abspath(a.out)), "peers-manifest.json")
    records = []
    sources = {}
    if a.gitleaks_rules and os.path.isdir(a.gitleaks_rules):
        ex, st = gitleaks_examples(a.gitleaks_rules, rng)
        write_source(a.out, "gitleaks-examples", ex, records)
        st["examples"] = sum(len(v) for v in ex.values())
        sources["gitleaks-examples"] = st
        print("peers: gitleaks: %d examples of %d rules (%d tps statements and %d list items outside the "
              "evaluated Go subset were skipped)" % (st["examples"], st["rules"], st["skipped_statements"],
                                                    st["skipped_items"]), file=sys.stderr)
    else:
        sources["gitleaks-examples"] = {"error": "gitleaks rule sources not found: %s" % a.gitleaks_rules}
        print("peers: gitleaks rule sources not found (%s)" % a.gitleaks_rules, file=sys.stderr)
    if a.kingfisher:
        ex, st = kingfisher_examples(a.kingfisher)
        st["examples"] = sum(len(v) for v in ex.values())
        if ex:
            write_source(a.out, "kingfisher-examples", ex, records)
            print("peers: kingfisher: %d examples of %d rules" % (st["examples"], st["rules"]), file=sys.stderr)
        else:
            st.setdefault("error", "none shipped: `kingfisher rules list --format json` gives %d rules, "
                          "all with empty examples" % st.get("rules_listed", 0))
            print("peers: kingfisher: " + st["error"], file=sys.stderr)
        sources["kingfisher-examples"] = st
    os.makedirs(a.out, exist_ok=True)
    with open(manifest, "w") as f:
        json.dump({"seed": a.seed, "sources": sources, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
