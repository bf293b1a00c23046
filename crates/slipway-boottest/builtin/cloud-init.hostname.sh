#!/bin/sh
# The host writes the local-hostname it put in meta-data to $SLIPWAY_DATA/hostname.
expected=$(cat "$SLIPWAY_DATA/hostname")
found=$(hostname)
if [ "$found" = "$expected" ]; then
    echo "hostname is $expected"
else
    echo "hostname is \"$found\", meta-data said \"$expected\""
    exit 1
fi
