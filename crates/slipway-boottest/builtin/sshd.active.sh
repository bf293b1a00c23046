#!/bin/sh
state=$(systemctl is-active ssh.service 2>&1)
if [ "$state" = active ]; then
    echo "ssh.service is active"
else
    echo "ssh.service is $state"
    exit 1
fi
