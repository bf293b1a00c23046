#!/bin/sh
# Runs on the host. SLIPWAY_SSH_HOST/PORT/USER/KEY reach the booted guest.
out=$(ssh -i "$SLIPWAY_SSH_KEY" -p "$SLIPWAY_SSH_PORT" \
    -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=30 -o LogLevel=ERROR \
    "$SLIPWAY_SSH_USER@$SLIPWAY_SSH_HOST" 'id -un && uname -r' 2>&1)
status=$?
printf '%s\n' "$out"
if [ "$status" -eq 0 ] && [ "$(printf '%s\n' "$out" | head -n 1)" = "$SLIPWAY_SSH_USER" ]; then
    echo "logged in as $SLIPWAY_SSH_USER and ran a command"
else
    echo "ssh exited $status:" $out
    exit 1
fi
