#!/bin/sh
# slipway guest test runner, run once per boot by slipway-runner.service.
#
# It waits for the boot to settle, then runs every test named in /var/lib/slipway/manifest (one line per
# test: name TAB timeout-seconds) from /var/lib/slipway/tests/<name>, and reports on the second serial port
# (ttyS1), which the host records to a file: one JSON object per line. For each attempt: its captured
# output (stdout and stderr, capped) as base64 chunks, then one line with its outcome. A test that does
# not pass is run again up to RERUNS times. It ends with {"done":true} and, unless the host still has
# tests to run over SSH (HOLD=1), powers the VM off.
# POSIX sh plus coreutils, systemd and cloud-init, all of which a cloud image has.

set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# The locations can be moved for the runner's own tests on the host; the guest uses the defaults.
base=${SLIPWAY_BASE:-/var/lib/slipway}
out=${SLIPWAY_PORT:-/dev/ttyS1}
RERUNS=1
CAP=262144
HOLD=0
# shellcheck source=/dev/null
. "$base/runner.env"

# Raw mode so the tty layer does not rewrite the output; a fast rate in case the UART is paced.
stty -F "$out" 115200 raw -echo 2>/dev/null || true
exec 3>"$out"

# Seconds since the guest kernel started; `read` is a builtin, so this costs no process.
uptime_now() {
    read -r up _ </proc/uptime
    printf '%s' "$up"
}

# Test names come from the host, which allows only [A-Za-z0-9._-] in them: safe inside JSON strings.
printf '{"event":"started","uptime":"%s"}\n' "$(uptime_now)" >&3

# The unit is ordered after cloud-init's final stage, which writes /run/cloud-init/result.json when it
# ends; waiting for that file (bounded, so a stuck boot still reports: the host's deadline is the real
# limit) replaces `cloud-init status --wait`, whose Python start-up alone costs seconds under TCG.
if [ "${SLIPWAY_SETTLE:-1}" = 1 ]; then
    waited=0
    while [ ! -s /run/cloud-init/result.json ] && [ "$waited" -lt 600 ]; do
        sleep 0.5
        waited=$((waited + 1))
    done
    timeout 120 systemctl is-system-running --wait >/dev/null 2>&1
fi
printf '{"event":"settled","uptime":"%s"}\n' "$(uptime_now)" >&3

mkdir -p "$base/out" "$base/state"
tab=$(printf '\t')
while IFS="$tab" read -r name limit; do
    [ -n "$name" ] || continue
    state="$base/state/$name"
    mkdir -p "$state"
    attempt=0
    while :; do
        attempt=$((attempt + 1))
        capture="$base/out/$name.$attempt"
        status_file="$capture.status"
        extra_file="$capture.extra"
        rm -f "$status_file"
        start=$(uptime_now)
        # The test's exit status goes to a file, since a pipeline's status is its last command's (dash has
        # no pipefail). head keeps the first CAP bytes; cat drains and counts the rest, so a test that
        # prints without end never blocks on a full pipe. timeout signals the test's whole process group.
        (
            cd "$state" || exit 126
            SLIPWAY_ATTEMPT=$attempt SLIPWAY_STATE=$state SLIPWAY_DATA="$base/data" \
                timeout -k 5 "$limit" "$base/tests/$name" </dev/null 2>&1
            echo $? >"$status_file"
        ) | {
            head -c "$CAP" >"$capture"
            cat | wc -c >"$extra_file"
        }
        end=$(uptime_now)
        status=$(cat "$status_file" 2>/dev/null || echo 255)
        case $status in
        0) outcome=PASSED ;;
        77) outcome=SKIPPED ;;
        124 | 137) outcome=TIMEOUT ;;
        *) outcome=FAILED ;;
        esac
        truncated=false
        [ "$(cat "$extra_file" 2>/dev/null || echo 0)" -gt 0 ] && truncated=true
        # Chunks of 48 KiB (64 KiB of base64) keep every line short enough for any reader.
        base64 -w 65536 "$capture" | {
            i=0
            while IFS= read -r chunk; do
                printf '{"chunk":"%s","attempt":%d,"i":%d,"b64":"%s"}\n' "$name" "$attempt" "$i" "$chunk" >&3
                i=$((i + 1))
            done
        }
        seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
        printf '{"test":"%s","attempt":%d,"outcome":"%s","status":%d,"seconds":%s,"truncated":%s}\n' \
            "$name" "$attempt" "$outcome" "$status" "$seconds" "$truncated" >&3
        rm -f "$capture" "$status_file" "$extra_file"
        case $outcome in
        FAILED | TIMEOUT) [ "$attempt" -le "$RERUNS" ] || break ;;
        *) break ;;
        esac
    done
done <"$base/manifest"

printf '{"done":true,"uptime":"%s"}\n' "$(uptime_now)" >&3
exec 3>&-
if [ "$HOLD" = 1 ]; then
    # The host runs tests over SSH and stops the VM when they are done.
    exit 0
fi
systemctl poweroff
