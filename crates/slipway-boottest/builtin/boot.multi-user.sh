#!/bin/sh
state=$(systemctl is-active multi-user.target 2>&1)
if [ "$state" = active ]; then
    echo "multi-user.target is active"
else
    echo "multi-user.target is $state"
    exit 1
fi
