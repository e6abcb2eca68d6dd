#!/bin/sh
# Verify that every symbol in the given kernel config fragments ended up in the
# final .config exactly as requested (like Home Assistant OS's
# linux-check-dotconfig). Kconfig silently drops symbols whose dependencies are
# unmet or that do not exist, so without this check a fragment can rot unseen.
#
# usage: check-dotconfig.sh DOTCONFIG FRAGMENT...
# Exit 0 when all match; 1 with one line per mismatch otherwise.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 DOTCONFIG FRAGMENT..." >&2
    exit 2
fi
dotconfig=$1
shift
[ -r "$dotconfig" ] || { echo "check-dotconfig: cannot read $dotconfig" >&2; exit 2; }

# Later fragments override earlier ones, like merge_config.sh does: build the
# wanted map in order, then compare.
awk '
    FNR == NR {
        if (match($0, /^CONFIG_[A-Za-z0-9_]+=/)) {
            sym = substr($0, 1, RLENGTH - 1); have[sym] = substr($0, RLENGTH + 1)
        } else if (match($0, /^# CONFIG_[A-Za-z0-9_]+ is not set$/)) {
            have[$2] = "n"
        }
        next
    }
    {
        if (match($0, /^CONFIG_[A-Za-z0-9_]+=/)) {
            sym = substr($0, 1, RLENGTH - 1); val = substr($0, RLENGTH + 1)
        } else if (match($0, /^# CONFIG_[A-Za-z0-9_]+ is not set$/)) {
            sym = $2; val = "n"
        } else if ($0 ~ /^[ \t]*(#.*)?$/) {
            next
        } else {
            printf "%s:%d: unparseable line: %s\n", FILENAME, FNR, $0; bad++; next
        }
        if (!(sym in order)) { order[sym] = ++n; names[n] = sym }
        want[sym] = val; from[sym] = FILENAME ":" FNR
    }
    END {
        for (i = 1; i <= n; i++) {
            sym = names[i]; w = want[sym]; g = (sym in have) ? have[sym] : "n"
            if (w != g) {
                printf "MISMATCH %s: fragment wants %s=%s, .config has %s (%s)\n",
                    from[sym], sym, w, (sym in have) ? sym "=" g : "it unset/absent", \
                    "check its dependencies in Kconfig"
                bad++
            }
        }
        if (bad) { printf "check-dotconfig: %d mismatch(es)\n", bad; exit 1 }
        printf "check-dotconfig: all %d fragment symbols match\n", n
    }
' "$dotconfig" "$@"
