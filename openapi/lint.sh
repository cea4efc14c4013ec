#!/usr/bin/env bash
# Check the OpenAPI document the way partners' tools read it.
#
#   openapi/lint.sh [SPEC]      (SPEC defaults to openapi/openapi.json)
#
# Passes only when
#   - `redocly lint` (recommended rules, openapi/redocly.yaml) finds no error and no warning,
#   - `openapi-typescript` generates types without printing a warning,
#   - `openapi-python-client` generates a client without reporting a warning.
# The npm tools are installed into openapi/node_modules from package-lock.json when
# node_modules is missing or older than the lock file. PYTHON picks the interpreter that has
# openapi-python-client (default: the repository's .venv).
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd -- "$here/.." && pwd)"
spec="${1:-$root/openapi/openapi.json}"
if [[ ! -f $spec ]]; then
    echo "lint.sh: no OpenAPI document at $spec" >&2
    exit 2
fi
spec="$(cd -- "$(dirname -- "$spec")" && pwd)/$(basename -- "$spec")"

python="${PYTHON:-$root/.venv/bin/python}"
if [[ $python != */* ]]; then
    python="$(command -v -- "$python" || true)"
elif [[ $python != /* ]]; then
    python="$root/$python"
fi
if [[ -z $python || ! -x $python ]]; then
    echo "lint.sh: no Python at '${PYTHON:-$root/.venv/bin/python}' (set PYTHON, or create .venv)" >&2
    exit 2
fi
for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
        echo "lint.sh: $tool is not installed" >&2
        exit 2
    fi
done

# --- the npm tools -----------------------------------------------------------------------
bin="$here/node_modules/.bin"
if [[ ! -d $here/node_modules || $here/package-lock.json -nt $here/node_modules \
    || ! -x $bin/redocly || ! -x $bin/openapi-typescript ]]; then
    echo "lint.sh: installing the npm tools (npm ci)" >&2
    (cd -- "$here" && npm ci --no-audit --no-fund) >&2
    touch -- "$here/node_modules"
fi

# No phoning home, no "new version" banners: only the tools' findings are read.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1 FORCE_COLOR=0

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT
failed=0

fail() { # tool, summary, file with the details
    echo "$1: FAILED ($2)"
    sed 's/^/    /' -- "$3"
    failed=1
}

# --- redocly lint --------------------------------------------------------------------------
# Read the JSON report's totals: errors, warnings, and problems hidden by an ignore file must
# all be zero (an ignore file is no way around this check).
rc=0
"$bin/redocly" lint --config "$here/redocly.yaml" --format=json "$spec" \
    >"$tmp/redocly.json" 2>"$tmp/redocly.err" || rc=$?
verdict=0
node - "$tmp/redocly.json" >"$tmp/redocly.txt" 2>&1 <<'JS' || verdict=$?
const fs = require("node:fs");
const report = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const t = report.totals;
if (!t || ![t.errors, t.warnings, t.ignored].every(Number.isInteger)) {
  throw new Error("no totals in redocly's JSON report");
}
for (const p of report.problems) {
  const where = (p.location || []).map((l) => l.pointer).join(", ");
  console.log(`${p.severity} ${p.ruleId}: ${p.message} at ${where}`);
}
if (t.ignored) {
  console.log(`${t.ignored} problems hidden by .redocly.lint-ignore.yaml: delete it and fix them`);
}
console.log(`${t.errors} errors, ${t.warnings} warnings, ${t.ignored} ignored`);
process.exit(t.errors + t.warnings + t.ignored === 0 ? 0 : 1);
JS
if [[ $rc -eq 0 && $verdict -eq 0 ]]; then
    echo "redocly lint: ok"
else
    summary="$(tail -n 1 -- "$tmp/redocly.txt")"
    if [[ ! $summary =~ ^[0-9]+\ errors ]]; then
        summary="no report, exit $rc"
        cat -- "$tmp/redocly.err" >>"$tmp/redocly.txt"
    fi
    fail "redocly lint" "$summary" "$tmp/redocly.txt"
fi

# --- openapi-typescript ----------------------------------------------------------------------
# It lints with the Redocly config it is given (with none, it checks next to nothing), so it
# gets ours, as a partner's recommended setup would. It prints warnings (" ⚠  ...") and errors
# to stderr: any output there fails.
mkdir -- "$tmp/ts"
rc=0
(cd -- "$tmp/ts" && "$bin/openapi-typescript" "$spec" --redocly "$here/redocly.yaml" \
    --output "$tmp/ts/schema.d.ts") \
    >"$tmp/ts.out" 2>"$tmp/ts.err" || rc=$?
if [[ $rc -eq 0 && ! -s $tmp/ts.err && -s $tmp/ts/schema.d.ts ]] \
    && ! grep -Eq '⚠|✘' -- "$tmp/ts.out"; then
    echo "openapi-typescript: ok"
else
    cat -- "$tmp/ts.out" >>"$tmp/ts.err"
    fail "openapi-typescript" "exit $rc, $(grep -c '⚠' -- "$tmp/ts.err" || true) warnings" \
        "$tmp/ts.err"
fi

# --- openapi-python-client ---------------------------------------------------------------------
# --fail-on-warning turns its "Warning(s) encountered" into exit 1; its output is read too.
# Its post-generation hooks run ruff, which lives beside the interpreter.
rc=0
PATH="$(dirname -- "$python"):$PATH" "$python" -m openapi_python_client generate \
    --path "$spec" --output-path "$tmp/py" --overwrite --fail-on-warning \
    >"$tmp/py.out" 2>&1 || rc=$?
grep -v '^Generating ' -- "$tmp/py.out" >"$tmp/py.said" || true
if [[ $rc -eq 0 ]] && ! grep -Eqi 'warning|error|skipping|not in path' -- "$tmp/py.said"; then
    echo "openapi-python-client: ok"
else
    fail "openapi-python-client" "exit $rc" "$tmp/py.out"
fi

exit "$failed"
