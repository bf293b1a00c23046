#!/bin/sh
# journalctl -k reads the kernel ring buffer as journald stored it; dmesg is the fallback when the
# journal is not persistent yet.
log=$(journalctl -k -b 0 --no-pager -q 2>/dev/null || dmesg 2>/dev/null)
hits=$(printf '%s\n' "$log" | grep -E 'Oops|BUG:|Kernel panic|Call Trace:|general protection fault' | head -n 20)
if [ -z "$hits" ]; then
    echo "no kernel oops, BUG, panic or call trace in $(printf '%s\n' "$log" | wc -l) kernel log lines"
else
    printf '%s\n' "$hits"
    echo "the kernel log reports:" $(printf '%s\n' "$hits" | head -n 3)
    exit 1
fi
