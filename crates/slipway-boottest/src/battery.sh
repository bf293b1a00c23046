#!/bin/sh
# slipway boot test battery, run once in the guest by slipway-battery.service.
#
# It reports on the second serial port (ttyS1), which the host records to a file: one JSON object per
# line. The host decides the testcases that need knowledge the guest lacks (the expected hostname, the
# lock), so for those the guest only reports facts. It ends with {"done":true} and powers the VM off.
# POSIX sh plus coreutils, systemd and cloud-init, all of which a cloud image has.

set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

out=/dev/ttyS1
# Raw mode so the tty layer does not rewrite the output; a fast rate in case the UART is paced.
stty -F "$out" 115200 raw -echo 2>/dev/null || true
exec 3>"$out"

# Makes text safe inside a JSON string: drops control characters, turns tabs and newlines into spaces,
# caps the length, escapes backslashes and quotes.
esc() {
    printf '%s' "$1" | tr -d '\000-\010\013-\037' | tr '\t\n' '  ' | head -c 3000 |
        sed 's/\\/\\\\/g; s/"/\\"/g'
}

# report TESTCASE PASSED|FAILED NOTE
report() {
    printf '{"testcase":"%s","outcome":"%s","note":"%s","uptime":"%s"}\n' "$1" "$2" "$(esc "$3")" \
        "$(uptime_now)" >&3
}

# fact NAME COMMAND...: the command's output, base64-encoded, for the host to look at.
fact() {
    name=$1
    shift
    printf '{"fact":"%s","b64":"%s","uptime":"%s"}\n' "$name" \
        "$("$@" 2>&1 | head -c 262144 | base64 -w0)" "$(uptime_now)" >&3
}

# Seconds since the guest kernel started; `read` is a builtin, so this costs no process.
uptime_now() {
    read -r up _ </proc/uptime
    printf '%s' "$up"
}

printf '{"event":"started","uptime":"%s"}\n' "$(uptime_now)" >&3

# The unit is ordered after cloud-init's final stage, which writes /run/cloud-init/result.json when it
# ends; waiting for that file (bounded, so a stuck boot still reports: the host's deadline is the real
# limit) replaces `cloud-init status --wait`, whose Python start-up alone costs seconds under TCG.
waited=0
while [ ! -s /run/cloud-init/result.json ] && [ "$waited" -lt 600 ]; do
    sleep 0.5
    waited=$((waited + 1))
done
timeout 120 systemctl is-system-running --wait >/dev/null 2>&1
printf '{"event":"settled","uptime":"%s"}\n' "$(uptime_now)" >&3

# Where the boot time went, for whoever has to make it faster; only when asked (the unit sets
# SLIPWAY_BOOT_TIMING=1), since systemd-analyze takes seconds under TCG. It runs beside the tests.
timing_pid=
if [ "${SLIPWAY_BOOT_TIMING:-0}" = 1 ]; then
    timing=$(mktemp)
    {
        timeout 60 systemd-analyze
        echo
        timeout 60 systemd-analyze blame | head -n 30
    } >"$timing" 2>&1 &
    timing_pid=$!
fi

# boot.multi-user
state=$(systemctl is-active multi-user.target 2>&1)
if [ "$state" = active ]; then
    report boot.multi-user PASSED "multi-user.target is active"
else
    report boot.multi-user FAILED "multi-user.target is $state"
fi

# cloud-init.finished: the final stage wrote result.json, and neither it nor any stage in status.json
# lists an error (whitespace removed so the layout of the JSON does not matter).
result=$(tr -d ' \t\r\n' </run/cloud-init/result.json 2>&1)
stages=$(tr -d ' \t\r\n' </run/cloud-init/status.json 2>&1)
if [ -s /run/cloud-init/result.json ] &&
    printf '%s' "$result" | grep -q '"errors":\[\]' &&
    ! printf '%s' "$result" | grep -q '"errors":\[[^]]' &&
    ! printf '%s' "$stages" | grep -q '"errors":\[[^]]'; then
    report cloud-init.finished PASSED "cloud-init finished without errors"
else
    report cloud-init.finished FAILED "result.json: $result; status.json: $stages"
fi

# cloud-init.hostname: the host compares with the local-hostname it put in meta-data.
printf '{"fact":"hostname","value":"%s"}\n' "$(esc "$(hostname)")" >&3

# sshd.active
state=$(systemctl is-active ssh.service 2>&1)
if [ "$state" = active ]; then
    report sshd.active PASSED "ssh.service is active"
else
    report sshd.active FAILED "ssh.service is $state"
fi

# rootfs.grown: the image ships sized to its content; on first boot the root partition and filesystem must
# grow into the disk the instance was given (the host boots it on a bigger disk than the image).
root_source=$(findmnt -n -o SOURCE / 2>&1)
disk=/dev/$(lsblk -n -o PKNAME "$root_source" 2>/dev/null | head -n 1)
disk_bytes=$(lsblk -b -d -n -o SIZE "$disk" 2>/dev/null | tr -d ' ')
fs_bytes=$(df -B1 --output=size / 2>/dev/null | tail -n 1 | tr -d ' ')
if [ -n "$disk_bytes" ] && [ -n "$fs_bytes" ] && [ "$fs_bytes" -ge $((disk_bytes / 10 * 9)) ]; then
    report rootfs.grown PASSED "root filesystem $fs_bytes bytes on a $disk_bytes-byte disk"
else
    report rootfs.grown FAILED "root filesystem ${fs_bytes:-?} bytes on ${disk:-?} of ${disk_bytes:-?} bytes (root is $root_source)"
fi

# systemd.no-failed-units
failed=$(systemctl --failed --no-legend --plain 2>&1 | awk '{print $1}')
if [ -z "$failed" ]; then
    report systemd.no-failed-units PASSED "no failed units"
else
    report systemd.no-failed-units FAILED "failed units: $failed"
fi

# packages.match-lock: only packages dpkg considers installed ("ii"), in the lock's format.
installed_packages() {
    dpkg-query -W -f '${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n' |
        awk 'BEGIN { FS = "\t" } $1 ~ /^ii/ { print $2 "\t" $3 "\t" $4 }'
}
fact dpkg-query installed_packages

if [ -n "$timing_pid" ]; then
    wait "$timing_pid"
    fact boot-timing cat "$timing"
    rm -f "$timing"
fi

printf '{"done":true,"uptime":"%s"}\n' "$(uptime_now)" >&3
exec 3>&-
systemctl poweroff
