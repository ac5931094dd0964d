#!/usr/bin/env python3
"""Builds the "planted" corpus of bench/detect.sh: synthetic credentials of many families, each
written into several file contexts, plus placeholder values (negatives) in separate files, and a
JSON manifest of the ground truth.

    plant.py OUT_DIR [--seed N] [--manifest FILE]

Every value is made at run time from a seeded random generator (Python's random.Random, so the
same seed gives the same corpus), following the publicly documented shape of each token family
(prefix, alphabet, length, and the CRC32/base62 checksum of GitHub and npm tokens). Nothing here
is a real credential. Files:

    OUT_DIR/secrets/<family>/<context file>        one planted secret per file
    OUT_DIR/placeholders/<family>/<kind>.<ext>     placeholder values, which no tool should report
    manifest (default OUT_DIR/../planted-manifest.json, outside the scanned folder)

Manifest: {"seed": N, "families": [...], "contexts": [...], "records": [{"file", "line",
"end_line", "family", "context", "kind" ("secret" or "placeholder"), "value"}]}; file is
relative to OUT_DIR, lines are 1-based, end_line > line for values spanning several lines.
"""
import argparse
import base64
import binascii
import json
import os
import random
import string
import sys

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
B32 = string.ascii_uppercase + "234567"
# Passwords: no quote, backslash, $, `, #, whitespace, @ : / ? & % (so they sit unescaped in every
# context, URLs included).
PASSWORD = ALNUM + "!*-_.~+="


def rs(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def b62_checksum(s):
    """GitHub / npm token checksum: CRC32 of the random part, base62, left-padded to 6."""
    n = binascii.crc32(s.encode()) & 0xFFFFFFFF
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out.rjust(6, "0")


def b64(data, url=False, pad=True):
    s = (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()
    return s if pad else s.rstrip("=")


def password(rng, lo=14, hi=24):
    # At least one of each class, so no tool's "looks like a word" heuristic can excuse it.
    n = rng.randint(lo, hi)
    core = [rng.choice(string.ascii_lowercase), rng.choice(string.ascii_uppercase),
            rng.choice(string.digits), rng.choice("!*-_.~")]
    core += [rng.choice(PASSWORD) for _ in range(n - 4)]
    rng.shuffle(core)
    return rng.choice(string.ascii_letters) + "".join(core)


# ---------------------------------------------------------------------------------------------
# Families. Each: name, var (the variable name a developer would use), gen(rng) -> (prefix, body,
# suffix): the value is prefix + body + suffix and body is the secret part that placeholders
# replace; contexts: "generic" (all GENERIC contexts) or a list of context names.
# ---------------------------------------------------------------------------------------------


def checksummed(prefix):
    def gen(rng):
        r = rs(rng, B62, 30)
        return prefix, r + b62_checksum(r), ""
    return gen


def simple(prefix, alphabet, n, suffix=""):
    def gen(rng):
        k = rng.randint(*n) if isinstance(n, tuple) else n
        return prefix, rs(rng, alphabet, k), suffix
    return gen


def digits(rng, lo, hi):
    return str(rng.randint(1, 9)) + rs(rng, string.digits, rng.randint(lo, hi) - 1)


def slack_bot(rng):
    return "xoxb-", "%s-%s-%s" % (digits(rng, 10, 13), digits(rng, 10, 13), rs(rng, ALNUM, 24)), ""


def slack_user(rng):
    return "xoxp-", "%s-%s-%s-%s" % (digits(rng, 10, 13), digits(rng, 10, 13), digits(rng, 10, 13),
                                     rs(rng, HEX, 32)), ""


def slack_legacy(rng):
    p = rng.choice(["xoxa-2-", "xoxs-"])
    return p, "%s-%s-%s-%s" % (digits(rng, 10, 12), digits(rng, 10, 12), digits(rng, 10, 12),
                               rs(rng, HEX, 64)), ""


def slack_webhook(rng):
    return ("https://hooks.slack.com/services/",
            "T%s/B%s/%s" % (rs(rng, UPPER_ALNUM, 8), rs(rng, UPPER_ALNUM, 10), rs(rng, ALNUM, 24)), "")


def openai(rng):
    return "sk-proj-", rs(rng, B64URL, 74) + "T3BlbkFJ" + rs(rng, B64URL, 74), ""


def anthropic(rng):
    return "sk-ant-api03-", rs(rng, B64URL, 93) + "AA", ""


def discord(rng):
    uid = str(rng.randint(10**17, 10**18 - 1)).encode()  # a snowflake user id
    return "", "%s.%s.%s" % (b64(uid, True, False), rs(rng, B64URL, 6), rs(rng, B64URL, 38)), ""


def telegram(rng):
    return "", "%s:AA%s" % (digits(rng, 9, 10), rs(rng, B64URL, 33)), ""


def azure_storage(rng):
    acct = "st" + rs(rng, LOWER_ALNUM, 10)
    return ("DefaultEndpointsProtocol=https;AccountName=%s;AccountKey=" % acct,
            b64(rng.randbytes(64)), ";EndpointSuffix=core.windows.net")


def azure_ad(rng):
    return "", rs(rng, ALNUM, 3) + rng.choice(string.digits) + "Q~" + rs(rng, ALNUM + "_~.-", 34), ""


def vault(rng):
    return "hvs.", "CAESI" + rs(rng, B64URL, 86), ""


def databricks(rng):
    return "dapi", rs(rng, HEX, 32), ""


def grafana(rng):
    return "glsa_", rs(rng, ALNUM, 32) + "_" + rs(rng, HEX, 8), ""


def atlassian(rng):
    # 192 characters: "ATATT3xFfGF0", the body, "=", 8 uppercase hex (a CRC32, random here).
    return "ATATT3xFfGF0", rs(rng, B64URL, 171) + "=" + rs(rng, "0123456789ABCDEF", 8), ""


def sourcegraph(rng):
    return "sgp_", rs(rng, HEX, 16) + "_" + rs(rng, HEX, 40), ""


def onepassword(rng):
    doc = {
        "signInAddress": "my.1password.com",
        "userAuth": {"method": "SRPg-4096", "alg": "PBES2g-HS256", "iterations": 650000,
                     "salt": rs(rng, B64URL, 22)},
        "email": rs(rng, LOWER_ALNUM, 13) + "@1passwordserviceaccounts.com",
        "srpX": rs(rng, HEX, 64),
        "muk": {"alg": "A256GCM", "ext": True, "k": rs(rng, B64URL, 43),
                "key_ops": ["encrypt", "decrypt"], "kty": "oct", "kid": "mp"},
        "secret" "Key": "A3-%s-%s-%s-%s-%s-%s" % tuple(rs(rng, UPPER_ALNUM, k) for k in (6, 6, 5, 5, 5, 5)),
        "throttleSecret": {"seed": rs(rng, HEX, 64), "uuid": rs(rng, UPPER_ALNUM, 26)},
        "deviceUuid": rs(rng, LOWER_ALNUM, 26),
    }
    return "ops_", b64(json.dumps(doc, separators=(",", ":")).encode(), False, False), ""


def notion(rng):
    return "ntn_", digits(rng, 11, 11) + rs(rng, ALNUM, 35), ""


def postman(rng):
    return "PMAK-", rs(rng, HEX, 24) + "-" + rs(rng, HEX, 34), ""


def flyio(rng):
    return "fm2_", b64(b"\x94\xc4" + rng.randbytes(150), False, True), ""


def jwt(rng):
    head = b64(b'{"alg":"HS256","typ":"JWT"}', True, False)
    payload = b64(json.dumps({"sub": str(rng.randint(10**6, 10**9)), "name": rs(rng, string.ascii_lowercase, 8),
                              "iat": rng.randint(1600000000, 1800000000)}, separators=(",", ":")).encode(),
                  True, False)
    return head + ".", payload + "." + b64(rng.randbytes(32), True, False), ""


def uuid4(rng):
    h = rs(rng, HEX, 32)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def npmrc(rng):
    return "//registry.npmjs.org/:_authToken=", uuid4(rng), ""


def uri(scheme, host, path, user=True):
    def gen(rng):
        u = rng.choice(["app", "svc_orders", "deploy", "billing"]) if user else ""
        return "%s://%s:" % (scheme, u), password(rng), "@%s%s" % (host(rng), path)
    return gen


def pg_host(rng):
    return "db-%s.internal.corp:5432" % rs(rng, LOWER_ALNUM, 5)


def my_host(rng):
    return "mysql-%s.internal.corp:3306" % rs(rng, LOWER_ALNUM, 5)


def mongo_host(rng):
    return "cluster0.%s.mongodb.net" % rs(rng, LOWER_ALNUM, 5)


def redis_host(rng):
    return "cache-%s.internal.corp:6379" % rs(rng, LOWER_ALNUM, 5)


def web_host(rng):
    return "artifacts.%s.corp" % rs(rng, LOWER_ALNUM, 6)


def docker_auth(rng):
    # The secret is the whole base64 of user:password.
    return "", b64(("ci-bot:" + password(rng)).encode()), ""


def django(rng):
    return "django-insecure-", rs(rng, string.ascii_lowercase + string.digits + "!@#%^&*(-_=+)", 50), ""


def laravel(rng):
    return "base64:", b64(rng.randbytes(32)), ""


def bcrypt(rng):
    return "$2y$10$", rs(rng, "./" + ALNUM, 53), ""


def pem(kind):
    def gen(rng):
        if kind == "rsa":
            der = b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00" + rng.randbytes(1180)
            label = "RSA PRIVATE KEY"
        else:
            der = (b"openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none\x00\x00\x00\x00\x00\x00\x00\x01"
                   b"\x00\x00\x00\x33\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + rng.randbytes(300))
            label = "OPENSSH PRIVATE KEY"
        # Built from the label so this file holds no PEM armour a scanner would flag.
        head, foot = "-----%s %s-----" % ("BEGIN", label), "-----%s %s-----" % ("END", label)
        s = b64(der)
        body = "\n".join(s[i:i + (64 if kind == "rsa" else 70)] for i in range(0, len(s), 64 if kind == "rsa" else 70))
        return head + "\n", body, "\n" + foot
    return gen


GENERIC = ["env", "yaml", "json", "python", "javascript", "shell", "properties", "xml",
           "dockerfile", "k8s-secret", "terraform", "markdown", "url-query"]
NO_URL = [c for c in GENERIC if c != "url-query"]
MULTILINE = ["native", "yaml", "json", "python", "markdown", "k8s-secret", "terraform", "env"]

FAMILIES = [
    # name, var, gen, contexts
    ("aws-access-key-id", "AWS_ACCESS_KEY_ID", simple("AKIA", B32, 16), GENERIC),
    ("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", simple("", B64, 40), GENERIC),
    ("github-classic-pat", "GITHUB_TOKEN", checksummed("ghp_"), GENERIC),
    ("github-fine-grained-pat", "GITHUB_TOKEN", lambda r: ("github_pat_", "11" + rs(r, UPPER_ALNUM, 20) + "_" + rs(r, ALNUM, 59), ""), GENERIC),
    ("github-app-token", "GITHUB_APP_TOKEN", checksummed("ghs_"), GENERIC),
    ("github-oauth-token", "GH_OAUTH_TOKEN", checksummed("gho_"), GENERIC),
    ("gitlab-pat", "GITLAB_TOKEN", simple("glpat-", B64URL, 20), GENERIC),
    ("slack-bot-token", "SLACK_BOT_TOKEN", slack_bot, GENERIC),
    ("slack-user-token", "SLACK_USER_TOKEN", slack_user, GENERIC),
    ("slack-legacy-token", "SLACK_TOKEN", slack_legacy, GENERIC),
    ("slack-webhook-url", "SLACK_WEBHOOK_URL", slack_webhook, NO_URL),
    ("stripe-live-secret-key", "STRIPE_SECRET_KEY", simple("sk_live_", ALNUM, 99), GENERIC),
    ("stripe-restricted-key", "STRIPE_RESTRICTED_KEY", simple("rk_live_", ALNUM, 99), GENERIC),
    ("google-api-key", "GOOGLE_API_KEY", simple("AIza", B64URL, 35), GENERIC),
    ("openai-api-key", "OPENAI_API_KEY", openai, GENERIC),
    ("anthropic-api-key", "ANTHROPIC_API_KEY", anthropic, GENERIC),
    ("huggingface-token", "HF_TOKEN", simple("hf_", string.ascii_letters, 34), GENERIC),
    ("npm-token", "NPM_TOKEN", checksummed("npm_"), GENERIC),
    ("pypi-token", "PYPI_TOKEN", simple("pypi-AgEIcHlwaS5vcmc", B64URL, (70, 150)), GENERIC),
    ("sendgrid-api-key", "SENDGRID_API_KEY", lambda r: ("SG.", rs(r, B64URL, 22) + "." + rs(r, B64URL, 43), ""), GENERIC),
    ("twilio-api-key", "TWILIO_API_KEY", simple("SK", HEX, 32), GENERIC),
    ("mailgun-api-key", "MAILGUN_API_KEY", simple("key-", HEX, 32), GENERIC),
    ("discord-bot-token", "DISCORD_BOT_TOKEN", discord, GENERIC),
    ("telegram-bot-token", "TELEGRAM_BOT_TOKEN", telegram, GENERIC),
    ("azure-storage-connection-string", "AZURE_STORAGE_CONNECTION_STRING", azure_storage, NO_URL),
    ("azure-ad-client-secret", "AZURE_CLIENT_SECRET", azure_ad, GENERIC),
    ("heroku-api-key", "HEROKU_API_KEY", simple("HRKU-AA", B64URL, 58), GENERIC),
    ("digitalocean-token", "DIGITALOCEAN_TOKEN", simple("dop_v1_", HEX, 64), GENERIC),
    ("cloudflare-api-token", "CLOUDFLARE_API_TOKEN", simple("", B64URL, 40), GENERIC),
    ("datadog-api-key", "DD_API_KEY", simple("", HEX, 32), GENERIC),
    ("sentry-auth-token", "SENTRY_AUTH_TOKEN", simple("sntryu_", HEX, 64), GENERIC),
    ("grafana-service-account-token", "GRAFANA_TOKEN", grafana, GENERIC),
    ("vault-service-token", "VAULT_TOKEN", vault, GENERIC),
    ("databricks-token", "DATABRICKS_TOKEN", databricks, GENERIC),
    ("dockerhub-pat", "DOCKERHUB_TOKEN", simple("dckr_pat_", B64URL, 27), GENERIC),
    ("atlassian-api-token", "JIRA_API_TOKEN", atlassian, GENERIC),
    ("sourcegraph-token", "SRC_ACCESS_TOKEN", sourcegraph, GENERIC),
    ("1password-service-account-token", "OP_SERVICE_ACCOUNT_TOKEN", onepassword, GENERIC),
    ("notion-token", "NOTION_TOKEN", notion, GENERIC),
    ("linear-api-key", "LINEAR_API_KEY", simple("lin_api_", ALNUM, 40), GENERIC),
    ("postman-api-key", "POSTMAN_API_KEY", postman, GENERIC),
    ("doppler-token", "DOPPLER_TOKEN", simple("dp.pt.", ALNUM, 43), GENERIC),
    ("flyio-token", "FLY_API_TOKEN", flyio, GENERIC),
    ("jwt", "AUTH_JWT", jwt, GENERIC),
    ("private-key-rsa-pem", "PRIVATE_KEY", pem("rsa"), MULTILINE),
    ("private-key-openssh", "SSH_PRIVATE_KEY", pem("openssh"), MULTILINE),
    ("postgres-uri", "DATABASE_URL", uri("postgres", pg_host, "/orders"), NO_URL),
    ("mysql-uri", "MYSQL_URL", uri("mysql", my_host, "/shop"), NO_URL),
    ("mongodb-srv-uri", "MONGODB_URI", uri("mongodb+srv", mongo_host, "/app?retryWrites=true&w=majority"), NO_URL),
    ("redis-uri", "REDIS_URL", uri("redis", redis_host, "/0", user=False), NO_URL),
    ("basic-auth-url", "ARTIFACT_REPO_URL", uri("https", web_host, "/repository/maven-releases/"), NO_URL),
    ("npmrc-auth-token", "NPMRC", npmrc, ["native", "dockerfile", "shell", "markdown"]),
    ("netrc-password", None, lambda r: ("", password(r), ""), ["native", "dockerfile", "markdown"]),
    ("pgpass-password", None, lambda r: ("", password(r), ""), ["native", "shell", "markdown"]),
    ("docker-config-auth", None, docker_auth, ["native", "k8s-secret", "markdown"]),
    ("kubeconfig-token", None, lambda r: ("", rs(r, B64URL, 48), ""), ["native", "markdown"]),
    ("django-secret-key", "SECRET_KEY", django, ["native", "env", "yaml", "dockerfile", "k8s-secret", "shell"]),
    ("laravel-app-key", "APP_KEY", laravel, ["native", "yaml", "dockerfile", "k8s-secret", "shell"]),
    ("bcrypt-hash", "ADMIN_PASSWORD_HASH", bcrypt, ["native", "yaml", "json", "python", "javascript", "markdown"]),
    ("password-ini", None, lambda r: ("", password(r), ""), ["native", "markdown"]),
    ("password-yaml", None, lambda r: ("", password(r), ""), ["native", "markdown"]),
    ("password-properties", None, lambda r: ("", password(r), ""), ["native", "xml"]),
    ("password-env", "DB_PASSWORD", lambda r: ("", password(r), ""), ["native", "shell", "dockerfile", "k8s-secret"]),
]

# ---------------------------------------------------------------------------------------------
# Contexts. Each renderer returns (file name, lines, index of the first secret line, number of
# lines the secret spans).
# ---------------------------------------------------------------------------------------------


def snake(var):
    return var.lower()


def camel(var):
    parts = var.lower().split("_")
    return parts[0] + "".join(p.title() for p in parts[1:])


def dotted(var):
    return var.lower().replace("_", ".")


def block(lines_before, secret_lines, lines_after):
    return lines_before + secret_lines + lines_after, len(lines_before), len(secret_lines)


def render_generic(ctx, var, value, rng):
    """One-line values (multi-line values are handled by render_multiline)."""
    if ctx == "env":
        return (".env",) + block(["# service configuration", "APP_ENV=production", "LOG_LEVEL=info", "PORT=8080"],
                                 ["%s=%s" % (var, value)], ["FEATURE_FLAGS=search,export", ""])
    if ctx == "yaml":
        return ("config.yaml",) + block(["service:", "  name: orders", "  replicas: 3", "credentials:",
                                         "  region: eu-west-1"],
                                        ['  %s: "%s"' % (snake(var), value)], ["  timeout_seconds: 30", ""])
    if ctx == "json":
        return ("settings.json",) + block(["{", '  "name": "orders",', '  "port": 8080,'],
                                          ['  "%s": "%s",' % (camel(var), value)], ['  "debug": false', "}", ""])
    if ctx == "python":
        return ("settings.py",) + block(["import os", "", "DEBUG = False", "ALLOWED_HOSTS = ['orders.internal']"],
                                        ['%s = "%s"' % (var, value)], ["", "TIME_ZONE = 'UTC'", ""])
    if ctx == "javascript":
        return ("config.js",) + block(["'use strict';", "", "module.exports = {", "  port: 8080,"],
                                      ["  %s: '%s'," % (camel(var), value)], ["  retries: 3,", "};", ""])
    if ctx == "shell":
        return ("deploy.sh",) + block(["#!/usr/bin/env bash", "set -euo pipefail", 'cd "$(dirname "$0")"'],
                                      ["export %s='%s'" % (var, value)], ["./bin/release --env production", ""])
    if ctx == "properties":
        return ("application.properties",) + block(["server.port=8080", "spring.application.name=orders"],
                                                   ["%s=%s" % (dotted(var), value)],
                                                   ["logging.level.root=INFO", ""])
    if ctx == "xml":
        return ("app.config",) + block(['<?xml version="1.0" encoding="utf-8"?>', "<configuration>",
                                        "  <appSettings>", '    <add key="Environment" value="production" />'],
                                       ['    <add key="%s" value="%s" />' % (camel(var), value)],
                                       ["  </appSettings>", "</configuration>", ""])
    if ctx == "dockerfile":
        return ("Dockerfile",) + block(["FROM python:3.12-slim", "WORKDIR /app", "COPY . ."],
                                       ['ENV %s="%s"' % (var, value)],
                                       ['CMD ["python", "-m", "orders"]', ""])
    if ctx == "k8s-secret":
        return ("secret.yaml",) + block(["apiVersion: v1", "kind: Secret", "metadata:", "  name: orders-credentials",
                                         "type: Opaque", "data:"],
                                        ["  %s: %s" % (var, b64(value.encode()))], [""])
    if ctx == "terraform":
        return ("main.tf",) + block(['provider "aws" {', '  region = "eu-west-1"', "}", "",
                                     'resource "aws_ssm_parameter" "credential" {', '  name  = "/orders/credential"',
                                     '  type  = "SecureString"'],
                                    ['  %s = "%s"' % (snake(var), value)], ["}", ""])
    if ctx == "markdown":
        return ("README.md",) + block(["# Orders service", "", "Run it locally with:", "", "```bash"],
                                      ["export %s=%s" % (var, value)], ["make run", "```", ""])
    if ctx == "url-query":
        return ("urls.txt",) + block(["# endpoints seen in the proxy log", "GET https://status.internal.corp/health"],
                                     ["GET https://api.internal.corp/v1/orders?%s=%s&page=2" % (snake(var), value)],
                                     ["GET https://status.internal.corp/ready", ""])
    raise KeyError(ctx)


def render_multiline(ctx, var, value, rng):
    lines = value.split("\n")
    if ctx == "native":
        return ("id_rsa" if "RSA" in value else "id_ed25519",) + block([], lines, [""])
    if ctx == "yaml":
        return ("config.yaml",) + block(["service:", "  name: orders", "tls:"],
                                        ["  %s: |" % snake(var)] + ["    " + l for l in lines], ["  verify: true", ""])
    if ctx == "json":
        return ("settings.json",) + block(["{", '  "name": "orders",'],
                                          ['  "%s": "%s",' % (camel(var), "\\n".join(lines) + "\\n")],
                                          ['  "debug": false', "}", ""])
    if ctx == "python":
        return ("settings.py",) + block(["DEBUG = False", ""], ['%s = """%s' % (var, lines[0])] + lines[1:-1] + [lines[-1] + '"""'],
                                        ["", ""])
    if ctx == "markdown":
        return ("README.md",) + block(["# Deploy key", "", "```"], lines, ["```", ""])
    if ctx == "k8s-secret":
        return ("secret.yaml",) + block(["apiVersion: v1", "kind: Secret", "metadata:", "  name: deploy-key",
                                         "type: Opaque", "data:"],
                                        ["  %s: %s" % (snake(var), b64((value + "\n").encode()))], [""])
    if ctx == "terraform":
        return ("main.tf",) + block(['resource "tls_private_key_import" "deploy" {'],
                                    ["  %s = <<EOT" % snake(var)] + lines + ["EOT"], ["}", ""])
    if ctx == "env":
        return (".env",) + block(["APP_ENV=production"], ['%s="%s"' % (var, "\\n".join(lines))], ["PORT=8080", ""])
    raise KeyError(ctx)


def render_special(family, ctx, value, rng):
    """Families with their own file formats; ctx "native" is that format."""
    user = rng.choice(["deploy", "ci", "jenkins", "orders"])
    if family == "npmrc-auth-token":
        line = value
        if ctx == "native":
            return (".npmrc",) + block(["registry=https://registry.npmjs.org/", "save-exact=true"], [line],
                                       ["always-auth=true", ""])
        if ctx == "dockerfile":
            return ("Dockerfile",) + block(["FROM node:20-alpine", "WORKDIR /app", "COPY package.json ."],
                                           ['RUN echo "%s" > .npmrc && npm ci' % line], ['CMD ["node", "server.js"]', ""])
        if ctx == "shell":
            return ("ci.sh",) + block(["#!/bin/sh", "set -e"], ["echo '%s' >> ~/.npmrc" % line], ["npm publish", ""])
        if ctx == "markdown":
            return ("README.md",) + block(["## Publishing", "", "Put this in `~/.npmrc`:", "", "```ini"], [line],
                                          ["```", ""])
    if family == "netrc-password":
        line = "machine git.internal.corp login %s password %s" % (user, value)
        if ctx == "native":
            return (".netrc",) + block(["machine mirror.internal.corp login anonymous"], [line], [""])
        if ctx == "dockerfile":
            return ("Dockerfile",) + block(["FROM alpine:3.20", "RUN apk add --no-cache git"],
                                           ['RUN echo "%s" > /root/.netrc' % line], ['CMD ["git", "--version"]', ""])
        if ctx == "markdown":
            return ("README.md",) + block(["## Git access", "", "Add to `~/.netrc`:", "", "```"], [line], ["```", ""])
    if family == "pgpass-password":
        line = "db-main.internal.corp:5432:orders:%s:%s" % (user, value)
        if ctx == "native":
            return (".pgpass",) + block(["# hostname:port:database:username:password"], [line], [""])
        if ctx == "shell":
            return ("setup-db.sh",) + block(["#!/bin/sh", "set -e"], ["echo '%s' > ~/.pgpass" % line],
                                            ["chmod 600 ~/.pgpass", ""])
        if ctx == "markdown":
            return ("README.md",) + block(["## Database", "", "`~/.pgpass`:", "", "```"], [line], ["```", ""])
    if family == "docker-config-auth":
        doc = ['{', '  "auths": {', '    "registry.internal.corp": {', '      "auth": "%s"' % value, '    }', '  }', '}']
        if ctx == "native":
            return (".docker/config.json",) + block(doc[:3], [doc[3]], doc[4:] + [""])
        if ctx == "k8s-secret":
            enc = b64(json.dumps({"auths": {"registry.internal.corp": {"auth": value}}}).encode())
            return ("pull-secret.yaml",) + block(["apiVersion: v1", "kind: Secret", "metadata:", "  name: regcred",
                                                  "type: kubernetes.io/dockerconfigjson", "data:"],
                                                 ["  .dockerconfigjson: %s" % enc], [""])
        if ctx == "markdown":
            return ("README.md",) + block(["## Registry", "", "```json"] + doc[:3], [doc[3]], doc[4:] + ["```", ""])
    if family == "kubeconfig-token":
        pre = ["apiVersion: v1", "kind: Config", "clusters:", "- cluster:", "    server: https://k8s.internal.corp:6443",
               "  name: prod", "contexts:", "- context:", "    cluster: prod", "    user: deployer", "  name: prod",
               "current-context: prod", "users:", "- name: deployer", "  user:"]
        if ctx == "native":
            return ("kube/config",) + block(pre, ["    token: %s" % value], [""])
        if ctx == "markdown":
            return ("README.md",) + block(["## Cluster access", "", "```yaml"] + pre, ["    token: %s" % value], ["```", ""])
    if family == "django-secret-key" and ctx == "native":
        return ("settings.py",) + block(["from pathlib import Path", "", "BASE_DIR = Path(__file__).resolve().parent.parent", ""],
                                        ["SECRET_KEY = '%s'" % value], ["", "DEBUG = False", ""])
    if family == "laravel-app-key" and ctx == "native":
        return (".env",) + block(["APP_NAME=Orders", "APP_ENV=production"], ["APP_KEY=%s" % value],
                                 ["APP_DEBUG=false", "APP_URL=https://orders.internal.corp", ""])
    if family == "bcrypt-hash" and ctx == "native":
        return (".htpasswd",) + block([], ["admin:%s" % value], [""])
    if family == "password-ini":
        body = ["[database]", "host = db-main.internal.corp", "port = 5432", "user = orders"]
        if ctx == "native":
            return ("config.ini",) + block(body, ["password = %s" % value], ["pool_size = 10", ""])
        if ctx == "markdown":
            return ("README.md",) + block(["## Configuration", "", "```ini"] + body, ["password = %s" % value], ["```", ""])
    if family == "password-yaml":
        body = ["database:", "  host: db-main.internal.corp", "  port: 5432", "  username: orders"]
        if ctx == "native":
            return ("values.yaml",) + block(body, ["  password: %s" % value], ["  sslmode: require", ""])
        if ctx == "markdown":
            return ("README.md",) + block(["## Configuration", "", "```yaml"] + body, ["  password: %s" % value], ["```", ""])
    if family == "password-properties":
        if ctx == "native":
            return ("database.properties",) + block(["db.url=jdbc:postgresql://db-main.internal.corp:5432/orders",
                                                     "db.username=orders"], ["db.password=%s" % value], ["db.pool.max=10", ""])
        if ctx == "xml":
            return ("context.xml",) + block(["<Context>", '  <Resource name="jdbc/orders" auth="Container"',
                                             '            url="jdbc:postgresql://db-main.internal.corp:5432/orders"',
                                             '            username="orders"'],
                                            ['            password="%s"' % value], ["            maxTotal=\"20\"/>", "</Context>", ""])
    if family == "password-env" and ctx == "native":
        return (".env",) + block(["DB_HOST=db-main.internal.corp", "DB_PORT=5432", "DB_USER=orders"],
                                 ["DB_PASSWORD=%s" % value], ["DB_NAME=orders", ""])
    return None


def render(family, var, ctx, value, rng):
    r = render_special(family, ctx, value, rng)
    if r is not None:
        return r
    if "\n" in value:
        return render_multiline(ctx, var, value, rng)
    return render_generic(ctx, var, value, rng)


PLACEHOLDER_KINDS = ["changeme", "angle", "envref", "xxx", "example", "same"]


def placeholder(kind, var, prefix, body, suffix, multiline):
    """A placeholder version of a value. Structured values (URLs, connection strings, PEM blocks)
    keep their frame and get the placeholder as the secret part; a bare token becomes the
    placeholder for "changeme", "<your-…>" and "${VAR}", and keeps its prefix and length for
    the others (x…x, …EXAMPLE, one repeated character)."""
    structured = bool(suffix) or multiline or "://" in prefix or prefix.startswith(("//", "Default"))
    name = (var or "secret").lower().replace("_", "-")
    if kind in ("changeme", "angle", "envref"):
        b = {"changeme": "changeme", "angle": "<your-%s>" % name, "envref": "${%s}" % (var or "SECRET")}[kind]
        return prefix + b + suffix if structured else b
    if kind == "xxx":
        b = "".join(c if c == "\n" else "x" for c in body)
    elif kind == "example":
        b = "\n".join((l[:-7] + "EXAMPLE") if len(l) > 7 else "EXAMPLE" for l in body.split("\n"))
    elif kind == "same":
        b = "".join(c if c == "\n" else "a" for c in body)
    else:
        raise KeyError(kind)
    return prefix + b + suffix


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--manifest")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = a.out
    manifest = a.manifest or os.path.join(os.path.dirname(os.path.abspath(out)), "planted-manifest.json")
    records = []
    contexts = set()

    def write(rel, lines):
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="\n") as f:
            f.write("\n".join(lines))

    for family, var, gen, ctxs in FAMILIES:
        for ctx in ctxs:
            prefix, body, suffix = gen(rng)
            value = prefix + body + suffix
            name, lines, idx, span = render(family, var, ctx, value, rng)
            rel = "secrets/%s/%s/%s" % (family, ctx, name)
            write(rel, lines)
            contexts.add(ctx)
            records.append({"file": rel, "line": idx + 1, "end_line": idx + span, "family": family,
                            "context": ctx, "kind": "secret", "value": value})
        # Placeholders: each kind in the family's first two contexts.
        prefix, body, suffix = gen(rng)
        multiline = "\n" in body
        for kind in PLACEHOLDER_KINDS:
            value = placeholder(kind, var, prefix, body, suffix, multiline)
            for ctx in ctxs[:2]:
                if multiline and ctx not in ("native", "yaml", "json", "python", "markdown", "k8s-secret",
                                             "terraform", "env"):
                    continue
                name, lines, idx, span = render(family, var, ctx, value, rng)
                rel = "placeholders/%s/%s-%s/%s" % (family, kind, ctx, name)
                write(rel, lines)
                records.append({"file": rel, "line": idx + 1, "end_line": idx + span, "family": family,
                                "context": ctx, "kind": "placeholder", "placeholder": kind, "value": value})
    with open(manifest, "w") as f:
        json.dump({"seed": a.seed, "families": [f[0] for f in FAMILIES], "contexts": sorted(contexts),
                   "records": records}, f, indent=1)
    n_s = sum(r["kind"] == "secret" for r in records)
    print("planted: %d families, %d secrets, %d placeholders in %s (manifest %s)"
          % (len(FAMILIES), n_s, len(records) - n_s, out, manifest), file=sys.stderr)


if __name__ == "__main__":
    main()
