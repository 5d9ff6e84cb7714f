# Helpers sourced by the command-line tests (tests/cli_*.sh), which count
# their failures in `fails`.

check() { # description, then a command that must succeed
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}

near() { # value expected tolerance
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'
}

expect_rc() { # expected exit code, description, command... (its stdout in out.txt, stderr in err.txt)
    local want=$1 what=$2
    shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    if [ "$rc" -eq "$want" ]; then
        echo "ok: $what (exit $rc)"
    else
        echo "FAIL: $what: exit $rc, expected $want; stderr: $(cat err.txt)"
        fails=$((fails + 1))
    fi
}
