#!/bin/sh
failed=$(systemctl --failed --no-legend --plain 2>&1 | awk '{print $1}')
if [ -z "$failed" ]; then
    echo "no failed units"
else
    echo "failed units:" $failed
    exit 1
fi
