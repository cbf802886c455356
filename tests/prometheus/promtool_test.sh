#!/usr/bin/env bash
# deploy/prometheus with Debian's promtool: the scrape config and the rules
# check, the unit tests of tests/prometheus/alerts_test.yml pass, and they can
# fail: for every alert, mutant rule files must make the unit tests fail: one
# where the alert never fires (a case expects it to fire), one where its
# threshold is gone (a case expects silence below it) and, for alerts with a
# `for`, one without it (a case expects silence while it is pending). Fails, never skips, when promtool is missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
HERE="$ROOT/tests/prometheus"
PROM="$ROOT/deploy/prometheus"

for tool in promtool python3; do
  command -v "$tool" >/dev/null || {
    echo "FAIL: '$tool' not found (Debian: apt-get install prometheus python3-yaml; ./scripts/test installs both)" >&2
    exit 1
  }
done
python3 -c 'import yaml' 2>/dev/null || { echo "FAIL: python3-yaml is missing (apt-get install python3-yaml)" >&2; exit 1; }

promtool check config "$PROM/prometheus.yml"
promtool check rules "$PROM/alerts.yml"
(cd "$HERE" && promtool test rules alerts_test.yml)

WORK=$(mktemp -d /tmp/supaplane-promtool-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# Each mutant lives at the same depth as the real files so the test file's
# relative rule_files path resolves to it.

mapfile -t alerts < <(python3 -c '
import sys, yaml
for g in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for r in g["rules"]:
        if "alert" in r: print(r["alert"])' "$PROM/alerts.yml")
((${#alerts[@]} > 0)) || { echo "FAIL: no alerts found in $PROM/alerts.yml" >&2; exit 1; }

mutate() {  # alert mode dir: writes dir/deploy/prometheus/alerts.yml, or fails when mode does not apply
  python3 - "$PROM/alerts.yml" "$3/deploy/prometheus/alerts.yml" "$1" "$2" <<'PY'
import re, sys, yaml
src, dst, name, mode = sys.argv[1:]
doc = yaml.safe_load(open(src))
for g in doc["groups"]:
    for r in g["rules"]:
        if r.get("alert") != name:
            continue
        if mode == "never":        # a case must expect it to fire
            r["expr"] = "(%s) and on() vector(0) > 1" % r["expr"]
        elif mode == "threshold":  # a case below the threshold must expect silence
            expr, n = re.subn(r"(==|!=|>=|<=|>|<)\s*[0-9.e+-]+\s*$", ">= 0", r["expr"].strip())
            if n != 1:
                sys.exit("no trailing comparison in " + name)
            r["expr"] = expr
        elif mode == "nofor":      # a case inside the `for` must expect silence
            if "for" not in r:
                sys.exit(3)
            del r["for"]
yaml.safe_dump(doc, open(dst, "w"), sort_keys=False)
PY
}

# One mutant: prints a line when the unit tests fail to notice it.
try_mutant() {  # alert mode
  local dir="$WORK/$1.$2" rc=0
  mkdir -p "$dir/deploy/prometheus" "$dir/tests/prometheus"
  cp "$HERE/alerts_test.yml" "$dir/tests/prometheus/"
  mutate "$1" "$2" "$dir" || rc=$?
  if ((rc == 3)); then echo "n/a $1 $2"; return; fi
  ((rc == 0)) || { echo "ERROR $1 $2: cannot build the mutant"; return; }
  if (cd "$dir/tests/prometheus" && promtool test rules alerts_test.yml) >"$dir/out" 2>&1; then
    echo "SURVIVED $1 $2"
  else
    echo "caught $1 $2"
  fi
}

# Two at a time: promtool is CPU-bound and the machine is shared.
for a in "${alerts[@]}"; do for mode in never threshold nofor; do echo "$a $mode"; done; done >"$WORK/mutants"
export -f mutate try_mutant; export PROM HERE WORK
xargs -P 2 -L 1 bash -c 'try_mutant "$0" "$1"' <"$WORK/mutants" >"$WORK/results"
caught=$(grep -c '^caught' "$WORK/results" || true)
if grep -E '^(SURVIVED|ERROR)' "$WORK/results" >&2; then
  echo "FAIL: the mutants above were not caught: add cases to tests/prometheus/alerts_test.yml" \
    "(never: a case where the alert fires; threshold: a series below its threshold;" \
    "nofor: an evaluation inside its \`for\`)" >&2
  exit 1
fi
echo "promtool: config and rules valid; ${#alerts[@]} alerts unit-tested; $caught mutants caught"
